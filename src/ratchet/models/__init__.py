"""Chat model backends: local transformers (dynamic batching), OpenAI-compatible HTTP, vLLM, scripted; plus a cache.

`build_model` turns a `[model]` config section into a ChatModel. Backends are imported lazily, so that
importing `ratchet.models` does not import torch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ratchet.config import ConfigError, ModelSection
from ratchet.models.base import ChatModel, ModelError

__all__ = ["ChatModel", "ModelError", "build_model"]

# Read by OpenMP when torch loads, so it must be set before the first `import torch`; every backend module
# is imported after this package. With more busy threads than cores (the evaluator runs sandboxed code
# beside the model), spinning OpenMP threads made a 2-thread decode step 8-13x slower than 1 thread on a
# 2-core machine; sleeping ones did not. Set OMP_WAIT_POLICY yourself to choose otherwise.
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _local_name(name: str, root: Path) -> str:
    """A relative model dir is relative to the project root; a registry name maps to its weights dir;
    built-in names pass through."""
    candidate = Path(name).expanduser()
    if not candidate.is_absolute() and (root / candidate).is_dir():
        return str((root / candidate).resolve())
    from ratchet.models.registry_paths import registry_model_dir  # a model the flywheel trained, by registry name

    registered = registry_model_dir(root, name)
    return str(registered) if registered is not None else name


def _vllm_model(section: ModelSection, root: Path, cache_path: Path | None) -> ChatModel:
    """A vLLM server ratchet starts for the model `section.name` names, or the one at `section.base_url`."""
    from ratchet.models.openai import OpenAIModel
    from ratchet.models.vllm import VLLMModel, VLLMServer, find_vllm, tool_args

    def client(base_url: str) -> OpenAIModel:
        return OpenAIModel(section.name, base_url, api_key_env=section.api_key_env, concurrency=section.concurrency,
                           timeout_s=section.timeout_s, max_retries=section.max_retries, tool_calling=section.tool_calling)

    if section.base_url:
        return VLLMModel(section.name, client(section.base_url), None, section.start_timeout_s)
    from ratchet.models.gguf import is_adapter_dir, resolve_local_model

    model_dir = resolve_local_model(_local_name(section.name, root))
    if is_adapter_dir(model_dir):
        raise ModelError(f"{model_dir} is a PEFT adapter; vLLM serves whole models: merge it into its base first "
                         "(the flywheel's registry models are merged already)")
    dtype = "bfloat16" if section.dtype == "auto" else section.dtype
    log_dir = cache_path.parent / "vllm" if cache_path is not None else None
    args = [*section.vllm_args, *tool_args(model_dir, section.vllm_args)]
    server = VLLMServer(find_vllm(section.vllm_bin), model_dir, section.name, dtype, args, log_dir)
    return VLLMModel(section.name, client(server.base_url), server, section.start_timeout_s)


def build_model(section: ModelSection, root: Path, cache_path: Path | None = None) -> ChatModel:
    """The ChatModel a `[model]` section describes, behind a cache when `section.cache` and `cache_path` are set."""
    model: ChatModel
    if section.backend == "local":
        from ratchet.models.local import LocalModel

        model = LocalModel(
            _local_name(section.name, root), device=section.device, dtype=section.dtype, max_batch=section.max_batch
        )
    elif section.backend == "openai":
        from ratchet.models.openai import OpenAIModel

        if not section.base_url:
            raise ConfigError(
                "[model] backend = \"openai\" needs base_url, e.g. base_url = \"http://127.0.0.1:8000/v1\""
            )
        model = OpenAIModel(
            section.name,
            section.base_url,
            api_key_env=section.api_key_env,
            concurrency=section.concurrency,
            timeout_s=section.timeout_s,
            max_retries=section.max_retries,
            tool_calling=section.tool_calling,
        )
    elif section.backend == "vllm":
        model = _vllm_model(section, root, cache_path)
    elif section.backend == "scripted":
        from ratchet.models.scripted import ScriptedModel

        if not section.script:
            raise ConfigError(
                "[model] backend = \"scripted\" needs script = \"path/to/replies.py\" (a file defining "
                "reply(messages, params) -> str)"
            )
        script = Path(section.script)
        model = ScriptedModel.from_file(script if script.is_absolute() else root / script)
    else:  # the config's Literal already rejects this; kept so a new backend cannot be half-added
        raise ConfigError(f"[model] backend {section.backend!r} is not known; use local, openai, vllm or scripted")
    if section.cache and cache_path is not None:
        from ratchet.models.cache import CachedModel

        model = CachedModel(model, cache_path)
    return model

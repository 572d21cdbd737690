import asyncio
import sys

import pytest

from ratchet.config import ConfigError, ModelSection
from ratchet.models import ChatModel, build_model
from ratchet.models.cache import CachedModel
from ratchet.models.openai import OpenAIModel
from ratchet.models.scripted import ScriptedModel
from ratchet.types import SamplingParams


def write_script(root):
    (root / "replies.py").write_text("def reply(messages, params):\n    return 'scripted ok'\n")


def test_scripted_relative_to_root_and_cached(tmp_path):
    write_script(tmp_path)
    model = build_model(ModelSection(backend="scripted", script="replies.py"), tmp_path, tmp_path / "cache.sqlite")
    assert isinstance(model, CachedModel) and isinstance(model.inner, ScriptedModel)
    assert isinstance(model, ChatModel)

    async def go():
        msg = [{"role": "user", "content": "hi"}]
        return await model.chat(msg, SamplingParams()), await model.chat(msg, SamplingParams())

    first, second = asyncio.run(go())
    assert first.text == second.text == "scripted ok" and second.cached


def test_no_cache_when_disabled_or_no_path(tmp_path):
    write_script(tmp_path)
    section = ModelSection(backend="scripted", script="replies.py", cache=False)
    assert isinstance(build_model(section, tmp_path, tmp_path / "c.sqlite"), ScriptedModel)
    section = ModelSection(backend="scripted", script="replies.py")
    assert isinstance(build_model(section, tmp_path, None), ScriptedModel)


def test_openai_section(tmp_path):
    section = ModelSection(backend="openai", name="qwen", base_url="http://127.0.0.1:8000/v1", concurrency=3)
    model = build_model(section, tmp_path, None)
    assert isinstance(model, OpenAIModel)
    assert model.url == "http://127.0.0.1:8000/v1/chat/completions" and model.concurrency == 3


def test_missing_settings_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="base_url"):
        build_model(ModelSection(backend="openai"), tmp_path, None)
    with pytest.raises(ConfigError, match="script"):
        build_model(ModelSection(backend="scripted"), tmp_path, None)


def test_importing_models_does_not_import_torch():
    import subprocess

    code = "import sys, ratchet.models; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"

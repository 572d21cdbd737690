import asyncio

import pytest

from ratchet.models.base import ChatModel, ModelError
from ratchet.models.scripted import ScriptedModel
from ratchet.types import SamplingParams

MSG = [{"role": "user", "content": "what is two plus three"}]


def ask(model, params=SamplingParams()):
    return asyncio.run(model.chat(MSG, params))


def test_list_of_replies_cycles():
    model = ScriptedModel(["a", "b"])
    assert isinstance(model, ChatModel) and model.name == "scripted"
    assert [ask(model).text for _ in range(3)] == ["a", "b", "a"]


def test_function_sees_messages_and_params():
    model = ScriptedModel(lambda messages, params: f"{messages[-1]['content']} @ {params.temperature}", name="echo")
    out = ask(model, SamplingParams(temperature=0.5, seed=1))
    assert out.text == "what is two plus three @ 0.5" and model.name == "echo"
    assert out.prompt_tokens == 5 and out.completion_tokens == 7
    assert model.calls[0][1].seed == 1


def test_async_function_n_samples_and_stop():
    async def reply(messages, params):
        return "answer: 5\nmore"

    out = ask(ScriptedModel(reply), SamplingParams(n=2, stop=("\n",)))
    assert out.texts == ["answer: 5", "answer: 5"]


def test_from_file(tmp_path):
    script = tmp_path / "replies.py"
    script.write_text("def reply(messages, params):\n    return 'from file: ' + messages[0]['content']\n")
    model = ScriptedModel.from_file(script)
    assert ask(model).text == "from file: what is two plus three"
    assert model.name == "scripted:replies.py"


def test_bad_inputs_say_what_to_fix(tmp_path):
    with pytest.raises(ModelError, match="not a single string"):
        ScriptedModel("hello")
    with pytest.raises(ModelError, match="non-empty list"):
        ScriptedModel([])
    with pytest.raises(ModelError, match="does not exist"):
        ScriptedModel.from_file(tmp_path / "missing.py")
    (tmp_path / "noreply.py").write_text("x = 1\n")
    with pytest.raises(ModelError, match=r"must define a function reply\(messages, params\)"):
        ScriptedModel.from_file(tmp_path / "noreply.py")
    (tmp_path / "broken.py").write_text("def reply(:\n")
    with pytest.raises(ModelError, match="failed to import"):
        ScriptedModel.from_file(tmp_path / "broken.py")
    with pytest.raises(ModelError, match="returned int"):
        ask(ScriptedModel(lambda m, p: 42))

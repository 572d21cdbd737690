"""The prompt convention for tool calling (models/tool_prompt.py) and its chat-template twin
(models/chatml_tools.jinja, which a vLLM server ratchet starts for the embedded model uses)."""

import json
from pathlib import Path

import pytest

from ratchet.models import tool_prompt
from ratchet.types import Tools

ADD = {"type": "function", "function": {"name": "add", "description": "Add two numbers.",
                                        "parameters": {"type": "object", "properties": {"a": {"type": "number"},
                                                                                        "b": {"type": "number"}}}}}
TEMPLATE = Path(tool_prompt.__file__).with_name("chatml_tools.jinja")


def conversation(system: bool):
    msgs = [{"role": "system", "content": "Be brief."}] if system else []
    return msgs + [
        {"role": "user", "content": "What is 2+3?"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "call_0", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}]},
        {"role": "tool", "tool_call_id": "call_0", "name": "add", "content": "5"},
        {"role": "assistant", "content": "5"},
        {"role": "user", "content": "And 1+1?"},
    ]


def test_parse_reads_blocks_in_order_and_leaves_the_rest():
    tools = Tools((ADD,))
    text, calls = tool_prompt.parse('Let me add.\n<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'
                                    '<tool_call>{"name": "add", "arguments": {"a": 3}}</tool_call>', tools)
    assert text == "Let me add."
    assert [c["id"] for c in calls] == ["call_0", "call_1"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"a": 1, "b": 2} and calls[1]["function"]["name"] == "add"
    broken = "<tool_call>{name: add}</tool_call>"
    assert tool_prompt.parse(broken, tools) == (broken, [])  # not JSON: stays text, as vLLM's parser leaves it
    assert tool_prompt.parse('{"name": "add", "arguments": {}}', tools) == ('{"name": "add", "arguments": {}}', [])


def test_a_required_or_named_call_reads_a_bare_json_reply():
    _, calls = tool_prompt.parse('```json\n{"name": "add", "arguments": {"a": 1}}\n```', Tools((ADD,), "required"))
    assert calls[0]["function"]["name"] == "add"
    _, calls = tool_prompt.parse('{"a": 4, "b": 5}', Tools((ADD,), "add"))  # a named choice: the object is the arguments
    assert json.loads(calls[0]["function"]["arguments"]) == {"a": 4, "b": 5}
    with pytest.raises(ValueError, match="tool choice must be"):
        Tools((ADD,), "mul")
    with pytest.raises(ValueError, match='"type": "function"'):
        Tools(({"name": "add"},))


def test_render_puts_tools_in_the_system_message_and_tool_turns_in_text():
    out = tool_prompt.render(conversation(system=True), Tools((ADD,), "required"))
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert out[0]["content"].startswith("Be brief.\n\n# Tools") and '"name": "add"' in out[0]["content"]
    assert out[0]["content"].endswith("You must call at least one function.")
    assert out[2]["content"] == '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>'
    assert out[3]["content"] == "<tool_response>\n5\n</tool_response>"
    assert tool_prompt.render([{"role": "user", "content": "hi"}], None) == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("system", [True, False])
@pytest.mark.parametrize("with_tools", [True, False])
def test_the_chat_template_renders_what_the_convention_does(system, with_tools):
    from ratchet.models.gguf import resolve_local_model

    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(resolve_local_model("smollm2-135m"))
    own = tok.chat_template
    messages = conversation(system) if with_tools else [m for m in conversation(system) if m["role"] in ("system", "user")]
    tools = Tools((ADD,)) if with_tools else None
    expected = tok.apply_chat_template(tool_prompt.render(messages, tools), chat_template=own, tokenize=False,
                                       add_generation_prompt=True)
    for m in messages:  # a server hands templates parsed arguments (vLLM does)
        for c in m.get("tool_calls") or []:
            c["function"]["arguments"] = json.loads(c["function"]["arguments"])
    got = tok.apply_chat_template(messages, tools=list(tools.functions) if tools else None, chat_template=TEMPLATE.read_text(),
                                  tokenize=False, add_generation_prompt=True)
    assert got == expected

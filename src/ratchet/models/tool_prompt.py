"""Tool calling by prompt: the convention for backends without native tool calling (local, scripted, and an
OpenAI-compatible server configured with `[model] tool_calling = "prompt"`).

The format is Hermes's (the one Qwen and NousResearch models are trained on, and vLLM's `hermes` parser
reads), so a model sees the same text whichever way its tools reach it:

- the function specs go into the system message, inside <tools></tools>, one JSON object per line, with
  how to call them: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`;
- an assistant message's `tool_calls` are written back as those blocks, and a `tool` message becomes a
  user turn holding `<tool_response>...</tool_response>`;
- a reply's blocks become OpenAI-shaped tool calls (`call_0`, `call_1`, ... in order); a block that is not
  a JSON object with a string "name" stays in the text, as vLLM's parser leaves it. When a call is
  required and the reply has no block, a reply that is one bare JSON object is read as the call (for a
  named choice, an object without "name" is that function's arguments).

models/chatml_tools.jinja is the same convention as a chat template, for a vLLM server ratchet starts for
the embedded model (tests/test_tool_prompt.py checks that the two render the same text).
"""

from __future__ import annotations

import json
import re
from typing import Any

from ratchet.types import Completion, Message, Tools

TOOLS_HEADER = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_FOOTER = (
    "</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
    "</tool_call>"
)
_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


def tools_block(tools: Tools) -> str:
    lines = [TOOLS_HEADER, *(json.dumps(f, ensure_ascii=False) for f in tools.functions), TOOLS_FOOTER]
    text = "\n".join(lines)
    if tools.choice == "required":
        text += "\nYou must call at least one function."
    elif tools.named:
        text += f"\nYou must call the function {tools.named}."
    return text


def _call_text(call: dict[str, Any]) -> str:
    fn = call.get("function") or {}
    raw = fn.get("arguments", "{}")
    try:
        arguments = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        arguments = raw  # as the model wrote it: the conversation shows what was sent
    return "<tool_call>\n" + json.dumps({"name": fn.get("name"), "arguments": arguments}, ensure_ascii=False) + "\n</tool_call>"


def has_tool_turns(messages: list[Message]) -> bool:
    return any(isinstance(m, dict) and (m.get("tool_calls") or m.get("role") == "tool") for m in messages)


def plain_messages(messages: list[Message], tools: Tools | None) -> list[Message]:
    """render() when there is something to render (tools, or tool turns in the conversation); else `messages`."""
    return render(messages, tools) if tools is not None or has_tool_turns(messages) else messages


def render(messages: list[Message], tools: Tools | None) -> list[Message]:
    """Plain {role, content} messages that any chat template formats: tools in the system message, tool
    calls and results as text."""
    out: list[Message] = []
    for m in messages:
        role, content = m.get("role"), m.get("content") or ""
        if role == "assistant" and m.get("tool_calls"):
            calls = "\n".join(_call_text(c) for c in m["tool_calls"])
            out.append({"role": "assistant", "content": f"{content}\n{calls}" if content else calls})
        elif role == "tool":
            out.append({"role": "user", "content": f"<tool_response>\n{content}\n</tool_response>"})
        else:
            out.append({"role": role, "content": content})
    if tools is not None:
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{tools_block(tools)}"}
        else:
            out.insert(0, {"role": "system", "content": tools_block(tools)})
    return out


def _as_call(obj: Any, index: int, named: str | None) -> dict[str, Any] | None:
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("name"), str):
        name, arguments = obj["name"], obj.get("arguments", obj.get("parameters", {}))
    elif named is not None:
        name, arguments = named, obj
    else:
        return None
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return {"id": f"call_{index}", "type": "function", "function": {"name": name, "arguments": text}}


def parse(text: str, tools: Tools) -> tuple[str, list[dict[str, Any]]]:
    """(the reply's text without the tool-call blocks read, its tool calls in the OpenAI shape)."""
    calls: list[dict[str, Any]] = []
    named = tools.named

    def take(match: re.Match[str]) -> str:
        try:
            call = _as_call(json.loads(match.group(1)), len(calls), named)
        except json.JSONDecodeError:
            call = None
        if call is None:
            return match.group(0)
        calls.append(call)
        return ""

    rest = _BLOCK.sub(take, text).strip()
    if not calls and tools.choice != "auto":
        try:
            call = _as_call(json.loads(_FENCE.sub("", text.strip())), 0, named)
        except json.JSONDecodeError:
            call = None
        if call is not None:
            return "", [call]
    return rest, calls


def read_reply(completion: Completion, tools: Tools) -> Completion:
    """The completion with its first sample's tool-call blocks moved into `tool_calls`."""
    text, calls = parse(completion.text, tools)
    completion.texts = [text, *completion.texts[1:]]
    completion.tool_calls = calls
    return completion

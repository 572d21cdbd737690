"""Tool turns in training examples: kept in the OpenAI shape, rendered as text for training, made uniform for export.

An example of a tool-using model call keeps the conversation as the harness sent it (assistant messages with
`tool_calls`, `tool` messages) and, as its target, the call's reply as an assistant message: the reply's text
plus the tool calls it made. Two readers need other forms of it:
- training (train.py): the model must learn the text it reads at inference, so the prompt and the target go
  through models/tool_prompt.py's convention (what the local backend and the embedded model's template see),
  with the tools the call offered;
- HF `datasets` (export): arrow infers one schema per file from its first block, and a message struct that
  gains keys in a later block fails to cast, so a file with tool turns has every message in one shape
  (`uniform_records`).
Examples without tool turns pass through all of this unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ratchet.models import tool_prompt
from ratchet.types import Message, Tools


def call_tools(call: dict[str, Any]) -> dict[str, Any] | None:
    """The tools a recorded model call offered, as `Tools.to_json()`; None for a call without tools (or one
    recorded before the runtime kept the specs, with names only)."""
    specs = call.get("tool_specs")
    return dict(specs) if specs else None


def target_message(reply: str, tool_calls: Sequence[dict[str, Any]]) -> Message:
    """The assistant message an example trains on: the reply, with the tool calls it made."""
    if not tool_calls:
        return {"role": "assistant", "content": reply}
    return {"role": "assistant", "content": reply, "tool_calls": list(tool_calls)}


def target_text(reply: str, tool_calls: Sequence[dict[str, Any]]) -> str:
    """The target as the model writes it: the reply's text, then a <tool_call> block per call."""
    if not tool_calls:
        return reply
    return tool_prompt.render([target_message(reply, tool_calls)], None)[0]["content"]


def has_tool_turns(prompt: Sequence[Message], tools: dict[str, Any] | None, tool_calls: Sequence[dict[str, Any]]) -> bool:
    return bool(tools or tool_calls or tool_prompt.has_tool_turns(list(prompt)))


def rendered_prompt(prompt: Sequence[Message], tools: dict[str, Any] | None) -> list[Message]:
    """The prompt as plain {role, content} messages the model's chat template can format: the tools' specs in
    the system message, earlier tool calls and results as text (unchanged when there are no tool turns)."""
    return tool_prompt.plain_messages(list(prompt), Tools.from_json(tools) if tools else None)


def uniform_message(m: Message) -> dict[str, Any]:
    """One shape for every message of a file with tool turns: content always a string ("" for an assistant
    message that only calls tools), tool_calls always a list, tool_call_id and name always strings."""
    return {"role": m.get("role") or "", "content": m.get("content") or "", "tool_calls": list(m.get("tool_calls") or []),
            "tool_call_id": m.get("tool_call_id") or "", "name": m.get("name") or ""}


def uniform_records(records: Sequence[dict[str, Any]], message_columns: Sequence[str]) -> list[dict[str, Any]]:
    """Records as written to an export file. Without tool turns in the file: as they are. With them: every
    message of every record in `uniform_message`'s shape, `tools` a JSON string in every record ("[]" where the
    call offered none: function specs differ in their parameters, which arrow would union into one sparse
    struct), and the records with tool calls first, so arrow's first block already types tool_calls (a block
    whose tool_calls are all [] is typed list<null>, which a later block's calls cannot be cast to)."""
    def with_tools(r: dict[str, Any]) -> bool:
        return bool(r.get("tools")) or any(tool_prompt.has_tool_turns(r[c]) for c in message_columns)

    if not any(with_tools(r) for r in records):
        return list(records)
    out = []
    for r in records:
        row = {**r, **{c: [uniform_message(m) for m in r[c]] for c in message_columns}}
        row["tools"] = json.dumps(r.get("tools") or [], ensure_ascii=False)
        out.append(row)
    calls = [any(m["tool_calls"] for c in message_columns for m in row[c]) for row in out]
    return [row for row, c in zip(out, calls) if c] + [row for row, c in zip(out, calls) if not c]

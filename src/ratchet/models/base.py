"""The chat model protocol: messages in, completions out."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ratchet.types import Completion, Message, SamplingParams, Tools


class ModelError(RuntimeError):
    """A model call that failed for good (after retries); the message says what to check."""


class ModelUnavailable(ModelError):
    """The endpoint could not answer (down, too slow, rate-limited past the retries, replying garbage).

    Not the harness's fault: an evaluation stops instead of recording the episode as a failed task."""


@runtime_checkable
class ChatModel(Protocol):
    name: str  # stable identity used in cache keys and provenance

    # `tools`: functions the model may call; their calls come back in Completion.tool_calls. Every backend takes
    # them (natively or by models/tool_prompt.py's convention); callers pass tools only when there are some, so a
    # ChatModel written before tools existed still serves calls without them.
    async def chat(self, messages: list[Message], params: SamplingParams, tools: Tools | None = None) -> Completion: ...

    async def aclose(self) -> None: ...


async def ask(model: ChatModel, messages: list[Message], params: SamplingParams, tools: Tools | None) -> Completion:
    """`model.chat`, with `tools` passed only when there are some (see ChatModel: older models take none)."""
    return await (model.chat(messages, params, tools) if tools is not None else model.chat(messages, params))

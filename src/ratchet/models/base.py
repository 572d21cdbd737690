"""The chat model protocol: messages in, completions out."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ratchet.types import Completion, Message, SamplingParams


class ModelError(RuntimeError):
    """A model call that failed for good (after retries); the message says what to check."""


class ModelUnavailable(ModelError):
    """The endpoint could not answer (down, too slow, rate-limited past the retries, replying garbage).

    Not the harness's fault: an evaluation stops instead of recording the episode as a failed task."""


@runtime_checkable
class ChatModel(Protocol):
    name: str  # stable identity used in cache keys and provenance

    async def chat(self, messages: list[Message], params: SamplingParams) -> Completion: ...

    async def aclose(self) -> None: ...

"""A scripted ChatModel: replies come from a Python function or a list, for testing loop mechanics.

    ScriptedModel(lambda messages, params: "42")
    ScriptedModel(["first reply", "second reply"])          # cycles
    ScriptedModel.from_file("tests/fixtures/replies.py")     # a file defining reply(messages, params)
"""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ratchet.models import tool_prompt
from ratchet.models.base import ModelError
from ratchet.types import Completion, Message, SamplingParams, Tools

ReplyFn = Callable[[list[Message], SamplingParams], Any]  # returns str (or an awaitable of str)


def _count_tokens(text: str) -> int:
    return len(text.split())  # a stand-in: scripted replies have no tokenizer


class ScriptedModel:
    """A ChatModel whose replies come from `reply_fn(messages, params)` or cycle through a list of strings."""

    def __init__(self, reply_fn: ReplyFn | Sequence[str], name: str = "scripted"):
        if isinstance(reply_fn, str):
            raise ModelError("ScriptedModel takes a function or a list of replies, not a single string; wrap it in a list")
        if callable(reply_fn):
            self._reply: ReplyFn = reply_fn
        else:
            replies = list(reply_fn)
            if not replies or not all(isinstance(r, str) for r in replies):
                raise ModelError("ScriptedModel needs a non-empty list of string replies")
            cycle = itertools.cycle(replies)
            lock = threading.Lock()

            def next_reply(messages: list[Message], params: SamplingParams) -> str:
                with lock:
                    return next(cycle)

            self._reply = next_reply
        self.name = name
        self.calls: list[tuple[list[Message], SamplingParams]] = []  # what was asked, for assertions

    @classmethod
    def from_file(cls, path: str | Path, name: str | None = None) -> ScriptedModel:
        """Load `reply(messages, params)` from a Python file."""
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"scripted model file {path} does not exist; write a file defining reply(messages, params)")
        spec = importlib.util.spec_from_file_location(f"ratchet_scripted_{abs(hash(str(path.resolve())))}", path)
        if spec is None or spec.loader is None:
            raise ModelError(f"{path} cannot be loaded as a Python module")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            raise ModelError(f"{path} failed to import: {type(e).__name__}: {e}") from e
        reply = getattr(module, "reply", None)
        if not callable(reply):
            raise ModelError(f"{path} must define a function reply(messages, params) -> str")
        return cls(reply, name=name or f"scripted:{path.name}")

    def __repr__(self) -> str:
        return f"ScriptedModel(name={self.name!r})"

    async def _one(self, messages: list[Message], params: SamplingParams) -> str:
        text = self._reply(messages, params)
        if inspect.isawaitable(text):
            text = await text
        if not isinstance(text, str):
            raise ModelError(f"scripted reply function returned {type(text).__name__}, expected str")
        return text

    async def chat(self, messages: list[Message], params: SamplingParams, tools: Tools | None = None) -> Completion:
        # the script sees what a local model would: the prompt convention's messages
        messages = tool_prompt.plain_messages(messages, tools)
        self.calls.append((messages, params))
        texts = [await self._one(messages, params) for _ in range(params.n)]
        texts = [_cut_at_stop(t, params.stop) for t in texts]
        completion = Completion(
            texts=texts,
            prompt_tokens=sum(_count_tokens(m.get("content") or "") for m in messages),
            completion_tokens=sum(_count_tokens(t) for t in texts),
        )
        return tool_prompt.read_reply(completion, tools) if tools is not None else completion

    async def aclose(self) -> None:
        return None


def _cut_at_stop(text: str, stop: Sequence[str]) -> str:
    cuts = [pos for pos in (text.find(s) for s in stop) if pos >= 0]
    return text[: min(cuts)] if cuts else text

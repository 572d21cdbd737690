"""A chat model that counts the tokens of its calls, so a loop can charge them to a budget.

The proposer's model is wrapped in one: the engine takes the count after each proposal and adds it
to the run's usage (tokens and USD at that model's prices), whatever the proposer did with the calls.
"""

from __future__ import annotations

from collections.abc import Callable

from ratchet.models.base import ChatModel, ask
from ratchet.types import Completion, Message, SamplingParams, Tools


class MeteredModel:
    def __init__(self, inner: ChatModel, usd: Callable[[int, int], float] = lambda _p, _c: 0.0):
        self.inner, self.name, self._usd = inner, inner.name, usd
        self.prompt_tokens = self.completion_tokens = 0

    async def chat(self, messages: list[Message], params: SamplingParams, tools: Tools | None = None) -> Completion:
        completion = await ask(self.inner, messages, params, tools)
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        return completion

    def take(self) -> tuple[int, float]:
        """(tokens, USD) since the last take."""
        tokens = self.prompt_tokens + self.completion_tokens
        usd = self._usd(self.prompt_tokens, self.completion_tokens)
        self.prompt_tokens = self.completion_tokens = 0
        return tokens, usd

    async def aclose(self) -> None:
        await self.inner.aclose()

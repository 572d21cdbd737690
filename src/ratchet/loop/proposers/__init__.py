"""Proposers: where candidate changes come from (search over knobs, a reflective LLM, or a mix)."""

from __future__ import annotations

from ratchet.config import ConfigError
from ratchet.loop.proposers.base import Proposal, ProposalContext, ProposalError, Proposer
from ratchet.loop.proposers.llm import LLMProposer
from ratchet.loop.proposers.mix import MixProposer
from ratchet.loop.proposers.search import SearchProposer
from ratchet.models.base import ChatModel

KINDS = ("search", "llm", "mix")


def build_proposer(kind: str, model: ChatModel | None, seed: int = 0, system_prompt: str | None = None) -> Proposer:
    """The proposer named by [loop] proposer; `model` is the proposer's chat model (unused by search).
    `system_prompt` replaces the LLM proposer's harness prompt (research: repos and metrics)."""
    if kind == "search":
        return SearchProposer(seed)
    if kind not in KINDS:
        raise ConfigError(f"[loop] proposer = {kind!r} is unknown; write one of {', '.join(KINDS)}")
    if model is None:
        raise ConfigError(f"[loop] proposer = {kind!r} needs a chat model; configure [model] or "
                          "[loop.proposer_model], or use proposer = 'search' with knobs in params.toml")
    llm = LLMProposer(model) if system_prompt is None else LLMProposer(model, system_prompt=system_prompt)
    return llm if kind == "llm" else MixProposer(SearchProposer(seed), llm, seed)


__all__ = ["KINDS", "LLMProposer", "MixProposer", "Proposal", "ProposalContext", "ProposalError", "Proposer",
           "SearchProposer", "build_proposer"]

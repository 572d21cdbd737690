"""Proposers: where candidate changes come from (search over knobs, a reflective LLM, a mix of the two, a
tool-using meta-agent over any chat model, or an external coding agent run as a command)."""

from __future__ import annotations

from ratchet.config import ConfigError, LoopSection
from ratchet.loop.proposers.agent import AgentProposer
from ratchet.loop.proposers.base import Proposal, ProposalContext, ProposalError, Proposer
from ratchet.loop.proposers.command import CommandProposer
from ratchet.loop.proposers.llm import LLMProposer
from ratchet.loop.proposers.mix import MixProposer
from ratchet.loop.proposers.search import SearchProposer
from ratchet.models.base import ChatModel

KINDS = ("search", "llm", "mix", "agent", "command")
MODEL_KINDS = ("llm", "mix", "agent")  # the proposers that need a chat model


def build_proposer(kind: str, model: ChatModel | None, seed: int = 0, system_prompt: str | None = None,
                   loop: LoopSection | None = None) -> Proposer:
    """The proposer named by [loop] proposer; `model` is the proposer's chat model (unused by search and command).
    `system_prompt` replaces the LLM proposer's harness prompt (research: repos and metrics); `loop` gives the
    agent's limits and the command's `[loop.command]`."""
    loop = loop or LoopSection()
    if kind == "search":
        return SearchProposer(seed, startup=loop.search_startup)
    if kind not in KINDS:
        raise ConfigError(f"[loop] proposer = {kind!r} is unknown; write one of {', '.join(KINDS)}")
    if kind == "command":
        if loop.command is None:
            raise ConfigError("[loop] proposer = 'command' needs a [loop.command] table with argv = [...], e.g. "
                              'argv = ["claude", "-p", "{prompt}"]; see docs/meta-agent.md')
        return CommandProposer(loop.command)
    if model is None:
        raise ConfigError(f"[loop] proposer = {kind!r} needs a chat model; configure [model] or "
                          "[loop.proposer_model], or use proposer = 'search' with knobs in params.toml")
    if kind == "agent":
        return AgentProposer(model, max_steps=loop.agent_max_steps, max_tokens=loop.agent_max_tokens)
    llm = LLMProposer(model) if system_prompt is None else LLMProposer(model, system_prompt=system_prompt)
    return llm if kind == "llm" else MixProposer(SearchProposer(seed, startup=loop.search_startup), llm, seed)


__all__ = ["KINDS", "MODEL_KINDS", "AgentProposer", "CommandProposer", "LLMProposer", "MixProposer", "Proposal",
           "ProposalContext", "ProposalError", "Proposer", "SearchProposer", "build_proposer"]

"""Proposers for research: the evolve proposers, with an LLM system prompt about repos and metrics
(the research brief included) instead of harnesses."""

from __future__ import annotations

from ratchet.config import ConfigError
from ratchet.loop.edits import FORMAT_HELP
from ratchet.loop.proposers import LLMProposer, MixProposer, Proposer, SearchProposer
from ratchet.models.base import ChatModel
from ratchet.research.config import ResearchProject


def system_prompt(project: ResearchProject) -> str:
    s = project.spec
    better = "lower" if s.direction == "minimize" else "higher"
    text = f"""\
You improve a research experiment: a repository whose command (`{' '.join(s.argv)}`) trains or evaluates
something and prints a metric, {s.metric} ({better} is better). Each version runs on several seeds, each
run killed after {s.budget_s:g} seconds; a change is kept only when it improves {s.metric} on paired seeds
and again on fresh held-out seeds. A change whose run crashes, overruns the budget or prints no metric fails.

You may edit only these paths: {', '.join(s.editable)}. If params.toml is editable, it declares knobs:
change only `value =` lines, inside their ranges. Study the results and the failed trials, then make ONE
focused change that should improve {s.metric} within the budget. Answer exactly:

RATIONALE: why this change, citing the results
HYPOTHESIS: a falsifiable prediction, e.g. "{s.metric} goes {'down' if better == 'lower' else 'up'} by about 0.05"

{FORMAT_HELP}"""
    if project.brief.strip():
        text += "\n\n## Research brief (from the project)\n" + project.brief.strip()
    return text


def build_research_proposer(kind: str, model: ChatModel | None, seed: int, project: ResearchProject) -> Proposer:
    if kind == "search":
        return SearchProposer(seed)
    if kind not in ("llm", "mix"):
        raise ConfigError(f"[loop] proposer = {kind!r} is unknown; write search, llm or mix")
    if model is None:
        raise ConfigError(f"[loop] proposer = {kind!r} needs a chat model; configure [model] or [loop.proposer_model], "
                          "or use proposer = 'search' with knobs in params.toml")
    llm = LLMProposer(model, system_prompt=system_prompt(project))
    return llm if kind == "llm" else MixProposer(SearchProposer(seed), llm, seed)

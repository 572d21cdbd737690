"""The research proposers are the evolve proposers (`loop.proposers.build_proposer`) with this LLM system
prompt about repos and metrics (the research brief included) instead of harnesses."""

from __future__ import annotations

from ratchet.loop.edits import FORMAT_HELP
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

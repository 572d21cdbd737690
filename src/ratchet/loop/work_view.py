"""What a working proposer did, as `ratchet show` prints it: the agent's tool steps, the command's run.

Read from the ledger: a finished proposal's meta (state `proposal/<round>`), or a failed proposal's
attempts (its decision), so a proposal that never finished shows its steps too.
"""

from __future__ import annotations

from typing import Any

from ratchet.loop.record import proposal_state_key


def step_lines(steps: list[dict[str, Any]]) -> list[str]:
    """The agent's steps as `ratchet show` prints them: one line each."""
    lines = []
    for s in steps:
        args = ", ".join(f"{k}={v}" for k, v in (s.get("args") or {}).items())
        what = f"{s.get('tool') or '(malformed)'}({args})"
        outcome = f"ERROR {s['error']}" if s.get("error") else (s.get("result") or "")
        lines.append(f"  {s.get('step', '?'):>2}. {what[:110]} -> {outcome[:160]}".replace("\n", " "))
    return lines


def proposal_meta(ledger: Any, candidate: dict[str, Any]) -> dict[str, Any]:
    saved = ledger.get_state(candidate["run_id"], proposal_state_key(candidate["run_id"], candidate["round"],
                                                                     candidate["id"])) or {}
    return saved.get("meta") or {}


def agent_work(meta: dict[str, Any], attempts: Any) -> dict[str, Any] | None:
    """The agent's steps with their totals (for `ratchet show` and the UI); None for other proposers."""
    tried = [a for a in attempts if isinstance(a, dict)] if isinstance(attempts, list) else []
    steps = meta.get("steps") or [a for a in tried if "step" in a]
    if not steps:
        return None
    return {"steps": steps, "errors": sum(bool(s.get("error")) for s in steps),
            "tokens": meta.get("tokens", sum(int(s.get("tokens") or 0) for s in steps)),
            "episodes": meta.get("episodes") or 0}


def work_lines(meta: dict[str, Any], attempts: Any) -> list[str]:
    """Lines about the agent's steps or the command's run; [] for proposers that keep neither."""
    tried = [a for a in attempts if isinstance(a, dict)] if isinstance(attempts, list) else []
    lines: list[str] = []
    if work := agent_work(meta, attempts):
        lines += [f"agent steps ({len(work['steps'])}, {work['errors']} errors, {work['tokens']} tokens"
                  + (f", {work['episodes']} probe episodes" if work["episodes"] else "") + "):", *step_lines(work["steps"])]
    run = meta if "returncode" in meta else next((a for a in tried if "returncode" in a), None)
    if run:
        lines.append(f"command: {' '.join(run.get('argv') or [])} -> exit {run.get('returncode')} in "
                     f"{run.get('seconds')}s; env passed {run.get('env_passed') or []}, network "
                     f"{'on' if run.get('network') else 'off'}, PROPOSAL.md {'read' if run.get('proposal_file') else 'missing'}")
        if run.get("error"):
            lines.append(f"  failed: {run['error']}")
        if run.get("output_tail"):
            lines += ["  output (end):", *("    " + line for line in str(run["output_tail"]).splitlines()[-12:])]
    return lines

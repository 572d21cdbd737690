"""`ratchet report`: one self-contained HTML file for a run, drawn by the dashboard's own code.

The report inlines the dashboard's CSS, Chart.js and scripts, and carries the same JSON the live API
would serve for the run, its candidates, its lessons and (up to a cap) its trajectories. It makes no
network request, so it opens offline, attached to a PR or a paper.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ratchet.ledger import Ledger
from ratchet.ui import queries
from ratchet.ui.flywheel import flywheel_detail
from ratchet.ui.shell import render_page

MAX_ROLLOUTS = 400  # rollouts a report carries; the live dashboard has all of them
REPORT_TEXT_LIMIT = 2000  # characters per string of a carried trajectory


class ReportError(ValueError):
    """The report cannot be built; the message says what to fix."""


def report_data(ledger: Ledger, run_spec: str, max_rollouts: int = MAX_ROLLOUTS) -> dict[str, Any]:
    """Everything the report's pages read, keyed like the live API (run/ID, candidate/ID, ...)."""
    run = queries.resolve_run(ledger, run_spec)
    if run is None:
        known = ", ".join(r["id"] for r in ledger.runs()[:5]) or "none"
        raise ReportError(f"no single run matches {run_spec!r} (use a run id, a unique prefix, or 'latest'); "
                          f"newest runs: {known}")
    run_id = run["id"]
    detail = queries.run_detail(ledger, run_id)
    candidates = {c["id"]: queries.candidate_detail(ledger, c["id"]) for c in detail["candidates"]}
    trajs = queries.find_trajectories(ledger, run_id=run_id, limit=max(1, max_rollouts), text_limit=REPORT_TEXT_LIMIT)
    flywheel = flywheel_detail(ledger) if run["kind"] == "flywheel" else None
    return {
        "meta": {"mode": "static", "run": run_id, "writable": False, "pending": 0, "flywheel": flywheel is not None,
                 "generated_at": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
                 "trajectories_truncated": trajs["total"] > len(trajs["items"])},
        "runs": [r for r in queries.list_runs(ledger) if r["id"] == run_id],
        "run": {run_id: detail},
        "candidate": candidates,
        "lessons": queries.list_lessons(ledger, run_id),
        "trajectories": trajs["items"],
        "approvals": [],
        "flywheel": flywheel,
    }


def build_report(ledger: Ledger, run_spec: str, max_rollouts: int = MAX_ROLLOUTS) -> str:
    data = report_data(ledger, run_spec, max_rollouts)
    return render_page({"mode": "static", "data": data}, inline=True, title=f"ratchet report: {data['meta']['run']}")


def write_report(ledger: Ledger, run_spec: str, output: str | Path, max_rollouts: int = MAX_ROLLOUTS) -> Path:
    path = Path(output)
    html = build_report(ledger, run_spec, max_rollouts)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)  # a reader never sees half a report
    return path

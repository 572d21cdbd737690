"""The dashboard's web app (FastAPI): one HTML page, JSON endpoints over the ledger, and the approval action.

Reads need nothing; approving or rejecting needs the token that `ratchet ui` prints at start, sent in
the X-Ratchet-Token header (a custom header, so a page on another site cannot send it without a
CORS preflight that this app never answers). Bound to loopback, the app also refuses requests for
other host names, so a DNS-rebinding page cannot read the ledger through the browser.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import FastAPI, Header, HTTPException, Query
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from ratchet.ledger import Ledger
from ratchet.ledger.approval import ApprovalError, record_approval
from ratchet.loop.record import CandidateStatus
from ratchet.ui import queries
from ratchet.ui.flywheel import flywheel_detail, flywheel_present
from ratchet.ui.shell import render_page

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class UISettings:
    token: str | None = None  # None: read-only (no approvals from the browser)
    host: str = "127.0.0.1"  # the address the server binds; decides which Host headers are accepted
    poll_ms: int = 2500


def new_token() -> str:
    return secrets.token_urlsafe(24)


def create_app(ledger: Ledger, settings: UISettings | None = None) -> FastAPI:
    settings = settings or UISettings()
    app = FastAPI(title="ratchet", docs_url=None, redoc_url=None, openapi_url=None)
    if settings.host in LOOPBACK:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=sorted(LOOPBACK | {"[::1]"}))
    static_dir = resources.files("ratchet.ui").joinpath("static")
    app.mount("/static", StaticFiles(directory=str(static_dir)), name="static")
    page = render_page({"mode": "live", "poll_ms": settings.poll_ms}, inline=False)

    def found(value: Any, what: str) -> Any:
        if value is None:
            raise HTTPException(404, f"no {what} in the ledger")
        return value

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/meta")
    def meta() -> dict[str, Any]:
        return {"mode": "live", "writable": settings.token is not None,
                "pending": len(ledger.candidates_with_status(CandidateStatus.AWAITING_APPROVAL)),
                "flywheel": flywheel_present(ledger)}

    @app.get("/api/runs")
    def runs() -> list[dict[str, Any]]:
        return queries.list_runs(ledger)

    @app.get("/api/run/{run_id}")
    def run(run_id: str) -> dict[str, Any]:
        resolved = found(queries.resolve_run(ledger, run_id), f"run {run_id!r}")
        return queries.run_detail(ledger, resolved["id"])

    @app.get("/api/candidate/{cand_id}")
    def candidate(cand_id: str) -> dict[str, Any]:
        return found(queries.candidate_detail(ledger, cand_id), f"candidate {cand_id!r}")

    @app.get("/api/trajectories")
    def trajectories(run: str | None = None, candidate: str | None = None, split: str | None = None,
                     signal: str | None = None, limit: int = Query(50, ge=1, le=500),
                     offset: int = Query(0, ge=0)) -> dict[str, Any]:
        return queries.find_trajectories(ledger, run, candidate, split, signal, limit, offset)

    @app.get("/api/lessons")
    def lessons(run: str | None = None) -> list[dict[str, Any]]:
        return queries.list_lessons(ledger, run or None)

    @app.get("/api/approvals")
    def approvals() -> list[dict[str, Any]]:
        return queries.approval_queue(ledger)

    @app.get("/api/flywheel")
    def flywheel() -> Any:
        return JSONResponse(flywheel_detail(ledger))

    @app.post("/api/candidate/{cand_id}/{action}")
    def decide(cand_id: str, action: str, x_ratchet_token: str = Header("")) -> dict[str, Any]:
        if settings.token is None:
            raise HTTPException(403, "this dashboard is read-only; restart `ratchet ui` without --read-only")
        if not x_ratchet_token or not secrets.compare_digest(x_ratchet_token, settings.token):
            raise HTTPException(401, "missing or wrong token: paste the token that `ratchet ui` printed at start")
        if action not in ("approve", "reject"):
            raise HTTPException(404, f"unknown action {action!r}; use approve or reject")
        try:
            rec = record_approval(ledger, cand_id, action, by="ui")
        except ApprovalError as e:
            raise HTTPException(409, str(e)) from None
        return {"candidate": rec.candidate, "decision": rec.decision, "by": rec.by}

    return app

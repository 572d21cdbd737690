"""`ratchet ui` and `ratchet report`: the commands only; the work is in ratchet.ui.

FastAPI and uvicorn are imported inside `ui`, so other commands start fast and work without the [ui] extra.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import typer

from ratchet.cli.common import fail, fixable
from ratchet.console import console, err_console

LedgerOpt = typer.Option(None, "--ledger", help="Ledger path or SQLAlchemy URL (default: the project's, or $RATCHET_LEDGER).")
ProjectOpt = typer.Option(Path("."), "--project", "-p", help="Project directory whose ledger to read.")


def ledger_url_for(project: Path, ledger: str | None) -> str:
    """--ledger wins; then the project's configured ledger (which honours $RATCHET_LEDGER)."""
    from ratchet.config import ConfigError, load_project

    spec = ledger or None
    if spec is None:
        try:
            return load_project(project).ledger_url
        except ConfigError as e:
            if not os.environ.get("RATCHET_LEDGER"):
                fail(f"{e}\n(or pass --ledger PATH_OR_URL)")
            spec = os.environ["RATCHET_LEDGER"]
    if "://" in spec:
        return spec
    path = Path(spec).resolve()
    if not path.exists():
        fail(f"no ledger at {path}; run a loop first or pass the right --ledger")
    return f"sqlite:///{path}"


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _open_ledger(url: str):
    from ratchet.ledger import Ledger

    with fixable():
        return Ledger(url)


def ui(
    project: Path = ProjectOpt,
    ledger: str | None = LedgerOpt,
    port: int = typer.Option(8765, help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", help="Address to bind. Anything but loopback exposes the ledger to the network."),
    read_only: bool = typer.Option(False, "--read-only", help="No approvals from the browser, even with the token."),
    poll: float = typer.Option(2.5, help="Seconds between live updates in the browser."),
) -> None:
    """Serve the dashboard: runs, scores with intervals, candidates and diffs, trajectories, lessons, approvals."""
    try:
        import uvicorn

        from ratchet.ui.app import LOOPBACK, UISettings, create_app, new_token
    except ImportError as e:
        fail(f"the dashboard needs FastAPI and uvicorn ({e.name} is missing): pip install 'ratchet[ui]'")
    url = ledger_url_for(project, ledger)
    lg = _open_ledger(url)
    if not _port_free(host, port):
        fail(f"port {port} on {host} is in use; pass --port N")
    token = None if read_only else new_token()
    if host not in LOOPBACK:
        err_console.print(f"[yellow]warning:[/] binding {host}: anyone who can reach this address can read the ledger")
    app = create_app(lg, UISettings(token=token, host=host, poll_ms=int(poll * 1000)))
    shown = f"[{host}]" if ":" in host else host
    console.print(f"ratchet ui: http://{shown}:{port}/  (ledger {url.split('://')[0]})", soft_wrap=True)
    if token:  # the token once in the address opens the tab with approvals on; the page then drops it from the URL
        console.print(f"approval token: {token}", soft_wrap=True, highlight=False)
        console.print(f"approvals enabled: http://{shown}:{port}/?token={token}", soft_wrap=True, highlight=False)
    else:
        console.print("read-only: approvals are disabled")
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        lg.close()


def report(
    run: str = typer.Argument("latest", help="Run id, a unique prefix of one, or 'latest'."),
    output: Path = typer.Option(Path("report.html"), "--output", "-o", help="Where to write the HTML file."),
    project: Path = ProjectOpt,
    ledger: str | None = LedgerOpt,
    max_rollouts: int = typer.Option(400, help="Trajectories to carry in the file (the rest stay in the ledger)."),
) -> None:
    """Write one self-contained HTML file for a run (charts, candidates, diffs, lessons); it opens offline."""
    from ratchet.ui.report import write_report

    lg = _open_ledger(ledger_url_for(project, ledger))
    try:
        with fixable():  # a ReportError (no such run, several match) names what to pass instead
            path = write_report(lg, run, output, max_rollouts)
    finally:
        lg.close()
    console.print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")

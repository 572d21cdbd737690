"""The `ratchet` command: registers the commands of each group, in the order `ratchet --help` lists them."""

from __future__ import annotations

import sys

import typer

from ratchet.cli import evolve, export, flywheel, research, ui
from ratchet.cli.eval import eval_
from ratchet.cli.init import init
from ratchet.cli.plan import plan

app = typer.Typer(
    help="ratchet: an AI agent that improves its own harness, data and training recipe - and proves it.\n\n"
    "Start with `ratchet init DIR`, then `ratchet eval DIR` and `ratchet evolve DIR`.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

app.command("init")(init)
app.command("eval")(eval_)
app.command("plan")(plan)
app.command("evolve")(evolve.evolve)
app.command("log")(evolve.log_)
app.command("show")(evolve.show)
app.command("approve")(evolve.approve_)
app.command("reject")(evolve.reject_)
app.command("adopt")(evolve.adopt)
app.command("test")(evolve.test_)
app.command("ui")(ui.ui)
app.command("research")(research.research)
app.command("flywheel")(flywheel.flywheel)
app.command("models")(flywheel.models)
app.add_typer(flywheel.data_app, name="data")
app.command("report")(ui.report)
app.add_typer(export.export_app, name="export")


def run() -> None:
    """`python -m ratchet.cli`: the same command; a config error that escaped a command is still named."""
    from ratchet.cli.common import FIX, print_error
    from ratchet.config import ConfigError

    try:
        app()
    except ConfigError as e:
        print_error(str(e))
        sys.exit(FIX)

"""The `ratchet` command line: `main` registers the commands; one module per command group
(init, eval, evolve, research, flywheel, ui); `common` holds what they share (docs/cli.md)."""

from ratchet.cli.main import app

__all__ = ["app"]

"""`python -m ratchet.cli ARGS`: the same as `ratchet ARGS`."""

from ratchet.cli.main import run

run()

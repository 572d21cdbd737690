"""Ledgers written by an older ratchet, brought up to the current tables when opened.

One change so far: candidates no longer have a unique (run_id, round), since a population round
(`[loop] population`, loop/population.py) records several candidates in one round. Their ids stay unique
(the primary key, `<run>-r003`, `<run>-r003b`...), which is what kept a round from being recorded twice.
Only a constraint is dropped, so an older ratchet still reads the ledger; the schema version stays.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ratchet.ledger import schema as s

_OLD = "uq_candidate_round"


def upgrade(engine: Engine) -> None:
    with engine.begin() as c:
        if c.dialect.name == "postgresql":
            if c.execute(sa.text("SELECT 1 FROM pg_constraint WHERE conname = :n"), {"n": _OLD}).first():
                c.execute(sa.text(f"ALTER TABLE candidates DROP CONSTRAINT IF EXISTS {_OLD}"))
        elif c.dialect.name == "sqlite":
            _sqlite(c)


def _sqlite(c: Connection) -> None:
    """SQLite cannot drop a table constraint: the table is rebuilt. Each step is safe to repeat, so a kill
    part way (SQLite runs DDL outside the transaction) is finished by the next open."""
    tables = dict(c.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'table'")).all())
    if _OLD in (tables.get("candidates") or ""):
        c.execute(sa.text("ALTER TABLE candidates RENAME TO candidates_v1"))
        tables["candidates_v1"] = tables.pop("candidates")
    if "candidates_v1" not in tables:
        return
    if "candidates" not in tables:
        s.candidates.create(c)
    cols = ", ".join(f'"{col.name}"' for col in s.candidates.columns)
    c.execute(sa.text(f"INSERT OR IGNORE INTO candidates ({cols}) SELECT {cols} FROM candidates_v1"))
    c.execute(sa.text("DROP TABLE candidates_v1"))

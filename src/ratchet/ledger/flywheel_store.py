"""Ledger access for the data flywheel: generations, examples with provenance, and the model registry.

A thin layer over `Ledger` (same engine, same tables file), kept apart so the core store stays small.
Rows move forward only: an example is written once (kept or dropped), a model's status moves from
candidate to promoted or rejected.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ratchet.ledger import schema as s
from ratchet.ledger.store import Ledger, redact, row_dict, where_equal

JSON_COLUMNS = ("counts", "decision", "seconds", "data", "train_config", "metrics")  # decoded on read


class FlywheelStore:
    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        self.engine = ledger.engine

    # -- generations -------------------------------------------------------------------------------
    def open_generation(self, run_id: str, generation: int, model: str) -> dict[str, Any]:
        """The generation's row, created on first call (a resumed run gets the existing one back)."""
        now = time.time()
        try:
            with self.engine.begin() as c:
                c.execute(sa.insert(s.fw_generations).values(
                    run_id=run_id, generation=generation, model=model, status="generating", counts={},
                    decision={}, seconds={}, created_at=now, updated_at=now))
        except IntegrityError:
            pass
        row = self.generation(run_id, generation)
        assert row is not None
        return row

    def update_generation(self, run_id: str, generation: int, **fields: Any) -> None:
        with self.engine.begin() as c:
            c.execute(sa.update(s.fw_generations)
                      .where(s.fw_generations.c.run_id == run_id, s.fw_generations.c.generation == generation)
                      .values(updated_at=time.time(), **redact(fields)))

    def generation(self, run_id: str, generation: int) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(s.fw_generations).where(
                s.fw_generations.c.run_id == run_id, s.fw_generations.c.generation == generation)).mappings().first()
        return row_dict(row, JSON_COLUMNS) if row else None

    def generations(self, run_id: str | None = None) -> list[dict[str, Any]]:
        q = sa.select(s.fw_generations).order_by(s.fw_generations.c.created_at, s.fw_generations.c.generation)
        q = where_equal(q, s.fw_generations, run_id=run_id)
        with self.engine.connect() as c:
            return [row_dict(r, JSON_COLUMNS) for r in c.execute(q).mappings()]

    # -- examples ----------------------------------------------------------------------------------
    def add_examples(self, run_id: str, generation: int, rows: Iterable[dict[str, Any]]) -> int:
        """Insert example rows (id, kind, task_id, split, model, status, reason, score, data); existing ids are skipped."""
        now = time.time()
        values = [{**r, "run_id": run_id, "generation": generation, "data": redact(r["data"]), "created_at": now}
                  for r in rows]
        if not values:
            return 0
        with self.engine.begin() as c:
            have = {r[0] for r in c.execute(sa.select(s.fw_examples.c.id).where(
                s.fw_examples.c.id.in_([v["id"] for v in values])))}
            fresh = [v for v in values if v["id"] not in have]
            if fresh:
                c.execute(sa.insert(s.fw_examples), fresh)
        return len(fresh)

    def examples(self, run_id: str | None = None, generation: int | None = None, status: str | None = None,
                 kind: str | None = None, max_generation: int | None = None) -> list[dict[str, Any]]:
        q = sa.select(s.fw_examples).order_by(s.fw_examples.c.generation, s.fw_examples.c.id)
        q = where_equal(q, s.fw_examples, run_id=run_id, generation=generation, status=status, kind=kind)
        if max_generation is not None:
            q = q.where(s.fw_examples.c.generation <= max_generation)
        with self.engine.connect() as c:
            return [row_dict(r, JSON_COLUMNS) for r in c.execute(q).mappings()]

    def example(self, example_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(s.fw_examples).where(s.fw_examples.c.id == example_id)).mappings().first()
            if row is None:  # a unique prefix is enough, as with git
                rows = c.execute(sa.select(s.fw_examples).where(s.fw_examples.c.id.like(f"{example_id}%"))
                                 .limit(2)).mappings().all()
                row = rows[0] if len(rows) == 1 else None
        return row_dict(row, JSON_COLUMNS) if row else None

    def example_counts(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """(run, generation, kind, status, reason) -> count: the raw material of the data card."""
        cols = [s.fw_examples.c.run_id, s.fw_examples.c.generation, s.fw_examples.c.kind,
                s.fw_examples.c.status, s.fw_examples.c.reason]
        q = sa.select(*cols, sa.func.count().label("n")).group_by(*cols).order_by(*cols)
        q = where_equal(q, s.fw_examples, run_id=run_id)
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q).mappings()]

    # -- model registry ----------------------------------------------------------------------------
    def register_model(self, **fields: Any) -> None:
        now = time.time()
        fields = {"train_config": {}, "metrics": {}, **fields}
        try:
            with self.engine.begin() as c:
                c.execute(sa.insert(s.models).values(created_at=now, updated_at=now, **redact(fields)))
        except IntegrityError:  # registered before a crash: refresh what may have changed
            name = fields.pop("name")
            self.update_model(name, **{k: v for k, v in fields.items() if k != "project"})

    def update_model(self, name: str, **fields: Any) -> None:
        with self.engine.begin() as c:
            c.execute(sa.update(s.models).where(s.models.c.name == name).values(updated_at=time.time(), **redact(fields)))

    def model(self, name: str) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(s.models).where(s.models.c.name == name)).mappings().first()
        return row_dict(row, JSON_COLUMNS) if row else None

    def models(self, project: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        q = where_equal(sa.select(s.models).order_by(s.models.c.created_at), s.models, project=project, status=status)
        with self.engine.connect() as c:
            return [row_dict(r, JSON_COLUMNS) for r in c.execute(q).mappings()]

"""Ledger access: one small class over SQLAlchemy Core. SQLite (WAL) by default, PostgreSQL by URL.

Every write is one transaction, so a kill at any point leaves either the whole row or none of it.
Secrets are redacted before anything is stored (see `redact`).
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from ratchet.ledger import migrate
from ratchet.ledger import schema as s
from ratchet.types import Trajectory

_SECRET_PATTERNS = [
    re.compile(r"sk-[A-Za-z0-9_\-]{16,}"),  # OpenAI-style keys
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{16,}"),
    re.compile(r"(?i)((?:api[_-]?key|token|secret|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{6,}"),
]


_SCHEMA_LOCK_KEY = 0x72617463  # a PostgreSQL advisory lock that serialises creating the tables


class LedgerError(RuntimeError):
    """The ledger cannot be opened or written; the message says what to check."""


def _secret_values() -> list[str]:
    names = [k for k in os.environ if re.search(r"(?i)(key|token|secret|password)", k)]
    return sorted({os.environ[k] for k in names if len(os.environ[k]) >= 8}, key=len, reverse=True)


def redact(value: Any) -> Any:
    """Replace secrets (env values named like keys/tokens, and key-shaped strings) in any JSON-like value."""
    if isinstance(value, str):
        for secret in _secret_values():
            value = value.replace(secret, "[REDACTED]")
        for pat in _SECRET_PATTERNS:
            value = pat.sub(lambda m: (m.group(1) if m.groups() else "") + "[REDACTED]", value)
        return value
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


def decode_json(value: Any) -> Any:
    """A JSON column's value, decoded where the driver handed back its text (a reflected or raw-SQL column)."""
    return json.loads(value) if isinstance(value, str) else value


def row_dict(row: Mapping[str, Any], json_columns: Iterable[str] = ()) -> dict[str, Any]:
    """A result row as a plain dict, with the named JSON columns decoded (see `decode_json`)."""
    d = dict(row)
    for key in json_columns:
        if key in d:
            d[key] = decode_json(d[key])
    return d


def where_equal(q: sa.Select, table: sa.Table, **values: Any) -> sa.Select:
    """`q` narrowed to the rows whose named columns equal the values given; a None or "" value does not narrow."""
    for name, value in values.items():
        if value is not None and value != "":
            q = q.where(table.c[name] == value)
    return q


def new_id(prefix: str) -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


class Ledger:
    def __init__(self, url: str):
        self.url = url
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(url, connect_args={"timeout": 30})
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True)
        try:
            self._create_schema()
            migrate.upgrade(self.engine)
            self._check_version()
        except OperationalError as e:
            raise LedgerError(f"cannot open the ledger at {_safe_url(url)}: {e.orig}. Check the path/URL, "
                              "the disk space, and that no other program holds an exclusive lock.") from None

    def _create_schema(self, attempts: int = 5) -> None:
        """Create missing tables; safe when several loops open a new ledger at the same moment."""
        for attempt in range(attempts):
            try:
                with self.engine.begin() as c:
                    if c.dialect.name == "postgresql":  # DDL is transactional there: the lock makes it atomic
                        c.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
                    s.metadata.create_all(c)
                return
            except (OperationalError, ProgrammingError, IntegrityError) as e:
                # SQLite has no such lock: another process created a table between our check and
                # our CREATE; the next attempt sees it and skips it
                if "already exists" not in str(e.orig) or attempt == attempts - 1:
                    raise

    def _check_version(self) -> None:
        with self.engine.begin() as c:
            row = c.execute(sa.select(s.meta.c.value).where(s.meta.c.key == "schema_version")).first()
            if row is None:
                try:
                    c.execute(sa.insert(s.meta).values(key="schema_version", value=str(s.SCHEMA_VERSION)))
                except IntegrityError:
                    pass
            elif int(row[0]) > s.SCHEMA_VERSION:
                raise LedgerError(f"ledger schema {row[0]} is newer than this ratchet ({s.SCHEMA_VERSION}); upgrade ratchet")

    def close(self) -> None:
        self.engine.dispose()

    # -- runs ------------------------------------------------------------------------------------
    def create_run(self, kind: str, project: str, config: dict[str, Any], run_id: str | None = None) -> str:
        run_id = run_id or new_id(kind)
        now = time.time()
        with self.engine.begin() as c:
            c.execute(sa.insert(s.runs).values(id=run_id, kind=kind, project=project, status="running",
                                               config=redact(config), summary={}, created_at=now, updated_at=now))
        return run_id

    def run(self, run_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(s.runs).where(s.runs.c.id == run_id)).mappings().first()
        return dict(row) if row else None

    def runs(self, kind: str | None = None) -> list[dict[str, Any]]:
        q = where_equal(sa.select(s.runs).order_by(s.runs.c.created_at.desc()), s.runs, kind=kind)
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q).mappings()]

    def latest_run(self, kind: str, project: str) -> dict[str, Any] | None:
        return next((r for r in self.runs(kind) if r["project"] == project), None)

    def update_run(self, run_id: str, status: str | None = None, summary: dict[str, Any] | None = None) -> None:
        values: dict[str, Any] = {"updated_at": time.time()}
        if status:
            values["status"] = status
        if summary is not None:
            values["summary"] = redact(summary)
        with self.engine.begin() as c:
            c.execute(sa.update(s.runs).where(s.runs.c.id == run_id).values(**values))

    # -- evaluations and rollouts -------------------------------------------------------------------
    def open_eval(self, eval_id: str, **fields: Any) -> None:
        """Create the eval row if it does not exist (resuming reuses it)."""
        with self.engine.begin() as c:
            exists = c.execute(sa.select(s.evals.c.n_tasks).where(s.evals.c.id == eval_id)).first()
            if exists and fields.get("n_tasks", 0) > exists[0]:  # a slice first, then the whole split
                c.execute(sa.update(s.evals).where(s.evals.c.id == eval_id).values(n_tasks=fields["n_tasks"]))
            if not exists:
                try:
                    c.execute(sa.insert(s.evals).values(id=eval_id, status="running", created_at=time.time(), **fields))
                except IntegrityError:  # another process created it first
                    pass

    def finish_eval(self, eval_id: str, result: dict[str, Any]) -> None:
        with self.engine.begin() as c:
            c.execute(sa.update(s.evals).where(s.evals.c.id == eval_id).values(status="done", result=result))

    def eval(self, eval_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(s.evals).where(s.evals.c.id == eval_id)).mappings().first()
        return dict(row) if row else None

    def evals(self, run_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(s.evals).where(s.evals.c.run_id == run_id).order_by(s.evals.c.created_at))
            return [dict(r) for r in rows.mappings()]

    def add_rollout(self, eval_id: str, traj: Trajectory) -> bool:
        """Store one scored rollout; False if it was already there (a resumed evaluation)."""
        data = redact(traj.to_json())
        try:
            with self.engine.begin() as c:
                c.execute(sa.insert(s.rollouts).values(
                    eval_id=eval_id, task_id=traj.task_id, epoch=traj.epoch, seed=traj.seed, score=traj.score,
                    signal=traj.failure_signal, data=data, created_at=time.time()))
            return True
        except IntegrityError:
            return False

    def rollouts(self, eval_id: str) -> list[Trajectory]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(s.rollouts.c.data).where(s.rollouts.c.eval_id == eval_id)
                             .order_by(s.rollouts.c.task_id, s.rollouts.c.epoch))
            return [Trajectory.from_json(r[0]) for r in rows]

    def rollout_count(self, run_id: str | None = None) -> int:
        q = sa.select(sa.func.count()).select_from(s.rollouts)
        if run_id:
            q = q.join(s.evals, s.evals.c.id == s.rollouts.c.eval_id).where(s.evals.c.run_id == run_id)
        with self.engine.connect() as c:
            return int(c.execute(q).scalar_one())

    # -- candidates ----------------------------------------------------------------------------------
    def add_candidate(self, **fields: Any) -> None:
        now = time.time()
        fields = redact(fields)
        with self.engine.begin() as c:
            c.execute(sa.insert(s.candidates).values(created_at=now, updated_at=now, **fields))

    def update_candidate(self, cand_id: str, **fields: Any) -> None:
        with self.engine.begin() as c:
            c.execute(sa.update(s.candidates).where(s.candidates.c.id == cand_id)
                      .values(updated_at=time.time(), **redact(fields)))

    def candidate(self, cand_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(s.candidates).where(s.candidates.c.id == cand_id)).mappings().first()
            if row is None:  # allow a unique prefix, as git does
                rows = c.execute(sa.select(s.candidates).where(s.candidates.c.id.like(f"{cand_id}%"))).mappings().all()
                row = rows[0] if len(rows) == 1 else None
        return dict(row) if row else None

    def candidates(self, run_id: str, status: str | None = None) -> list[dict[str, Any]]:
        q = sa.select(s.candidates).where(s.candidates.c.run_id == run_id).order_by(s.candidates.c.round)
        q = where_equal(q, s.candidates, status=status)
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q).mappings()]

    def candidates_with_status(self, status: str) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(s.candidates).where(s.candidates.c.status == status)
                             .order_by(s.candidates.c.created_at))
            return [dict(r) for r in rows.mappings()]

    # -- lessons, events, state ----------------------------------------------------------------------
    def add_lesson(self, run_id: str, round_: int, candidate_id: str | None, text: str, data: dict[str, Any]) -> None:
        try:
            with self.engine.begin() as c:
                c.execute(sa.insert(s.lessons).values(run_id=run_id, round=round_, candidate_id=candidate_id,
                                                      text=redact(text), data=redact(data), created_at=time.time()))
        except IntegrityError:  # written before a crash; the round's lesson is already there
            pass

    def lessons(self, run_id: str | None = None, project_runs: Iterable[str] | None = None) -> list[dict[str, Any]]:
        q = sa.select(s.lessons).order_by(s.lessons.c.created_at)
        if run_id:
            q = q.where(s.lessons.c.run_id == run_id)
        elif project_runs is not None:
            q = q.where(s.lessons.c.run_id.in_(list(project_runs)))
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q).mappings()]

    def add_event(self, kind: str, data: dict[str, Any], run_id: str | None = None) -> None:
        with self.engine.begin() as c:
            c.execute(sa.insert(s.events).values(run_id=run_id, kind=kind, data=redact(data), created_at=time.time()))

    def events(self, run_id: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        q = where_equal(sa.select(s.events).order_by(s.events.c.id), s.events, run_id=run_id, kind=kind)
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q).mappings()]

    def set_state(self, run_id: str, key: str, value: Any) -> None:
        value = redact(value)  # a stored proposal carries the proposer's rationale, which may quote a key
        with self.engine.begin() as c:
            updated = c.execute(sa.update(s.state).where(s.state.c.run_id == run_id, s.state.c.key == key)
                                .values(value=value, updated_at=time.time())).rowcount
            if not updated:
                c.execute(sa.insert(s.state).values(run_id=run_id, key=key, value=value, updated_at=time.time()))

    def get_state(self, run_id: str, key: str, default: Any = None) -> Any:
        with self.engine.connect() as c:
            row = c.execute(sa.select(s.state.c.value).where(s.state.c.run_id == run_id, s.state.c.key == key)).first()
        return row[0] if row else default


def _safe_url(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]+@", r"://\1:***@", url)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()

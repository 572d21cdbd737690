"""The flywheel page's data: the flywheel tables of `ratchet.ledger.schema`, shown as tables and charts.

The tables (fw_generations, fw_examples, models) are written by the flywheel loop and defined in the
schema; this module reads them through those definitions and names their columns from them. It shows
every column as a table, counts examples per generation and per filter outcome, plots accuracy-like
numbers per generation (also inside JSON columns such as a generation's decision), and draws the model
lineage. A ledger whose tables lack some of the schema's columns (another ratchet version, another
tool) is read by reflection instead, and its columns are matched by the usual alternative names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from ratchet.ledger import Ledger
from ratchet.ledger import schema as s
from ratchet.types import jsonable

SCHEMA_TABLES = (s.fw_generations, s.fw_examples, s.models)
TABLES = tuple(t.name for t in SCHEMA_TABLES)
ROW_LIMIT = 500
# the schema's column first, then the names a table from elsewhere may use
_GEN_KEYS = (s.fw_generations.c.generation.name, "gen", "generation_id", "round")
_OUTCOME_KEYS = (s.fw_examples.c.status.name, s.fw_examples.c.reason.name)  # "kept", or "dropped: <reason>"
_ID_KEYS = (s.models.c.name.name, "id")
_PARENT_KEYS = (s.models.c.parent.name, "parent_id", "base_model", "base")
_RUN_KEY = s.fw_generations.c.run_id.name
_ORDER_KEYS = (s.fw_generations.c.created_at.name, _RUN_KEY, s.fw_generations.c.generation.name)
# numeric leaves worth a line per generation: accuracies and the means a decision compares
_METRIC_LEAF = re.compile(r"(accuracy|^acc$|score|^mean$|mean_cand|mean_parent)$", re.I)


def _present(ledger: Ledger) -> set[str]:
    return set(sa.inspect(ledger.engine).get_table_names()) & set(TABLES)


def _tables(ledger: Ledger) -> dict[str, sa.Table]:
    """The flywheel tables the ledger has: the schema's definition where the table has all its columns, else
    the table as reflected (older or foreign: read whatever columns it has)."""
    inspector = sa.inspect(ledger.engine)
    present = set(inspector.get_table_names())
    out: dict[str, sa.Table] = {}
    for table in SCHEMA_TABLES:
        if table.name not in present:
            continue
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        out[table.name] = table if set(table.columns.keys()) <= columns else \
            sa.Table(table.name, sa.MetaData(), autoload_with=ledger.engine)
    return out


def flywheel_present(ledger: Ledger) -> bool:
    """Cheap check for the navigation (polled): a flywheel table exists and has a row."""
    with ledger.engine.connect() as c:
        return any(c.execute(sa.select(sa.literal(1)).select_from(sa.table(name)).limit(1)).first()
                   for name in sorted(_present(ledger)))


def flywheel_detail(ledger: Ledger) -> dict[str, Any] | None:
    """None when there is no flywheel data (no tables or no rows); else tables, counts and per-generation metrics."""
    tables = _tables(ledger)
    if not tables:
        return None
    with ledger.engine.connect() as c:
        counts = {n: int(c.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()) for n, t in tables.items()}
        if not any(counts.values()):
            return None
        rows = {n: [dict(r) for r in c.execute(_ordered(t).limit(ROW_LIMIT)).mappings()]
                for n, t in tables.items() if n != s.fw_examples.name}
        examples = example_counts(c, tables.get(s.fw_examples.name))
    gens, models = rows.get(s.fw_generations.name, []), rows.get(s.models.name, [])
    return jsonable({
        "counts": {n: counts.get(n, 0) for n in TABLES},
        "generations": gens,
        "generation_columns": _columns(tables.get(s.fw_generations.name)),
        "models": models,
        "model_columns": _columns(tables.get(s.models.name)),
        "model_tree": model_tree(models),
        "examples": examples,
        "metrics": generation_metrics(gens),
    })


def _columns(table: sa.Table | None) -> list[str]:
    return list(table.columns.keys()) if table is not None else []


def _ordered(table: sa.Table) -> sa.Select:
    keys = [table.c[k] for k in _ORDER_KEYS if k in table.c]
    return sa.select(table).order_by(*keys)


def _pick(columns: list[str], keys: tuple[str, ...]) -> str | None:
    return next((k for k in keys if k in columns), None)


def _gen_label(run: Any, gen: Any, many_runs: bool) -> str:
    return f"{run} · gen {gen}" if many_runs else f"gen {gen}"


def example_counts(conn: sa.Connection, table: sa.Table | None) -> dict[str, Any]:
    """Examples per generation, split by filter outcome (status, and the drop reason when there is one)."""
    empty = {"by_generation": [], "group_key": None, "filter_key": None}
    if table is None:
        return empty
    cols = list(table.columns.keys())
    gen = _pick(cols, _GEN_KEYS)
    if gen is None:
        return empty
    outcome = [k for k in _OUTCOME_KEYS if k in cols]
    run = [_RUN_KEY] if _RUN_KEY in cols else []
    keys = [table.c[k] for k in run + [gen] + outcome]
    grouped = conn.execute(sa.select(*keys, sa.func.count()).group_by(*keys)).all()
    many_runs = len({r[0] for r in grouped}) > 1 if run else False
    out: dict[tuple[Any, Any], dict[str, int]] = {}
    for r in grouped:
        run_v, gen_v = (r[0], r[1]) if run else (None, r[0])
        parts = [str(v) for v in r[len(run) + 1:-1] if v not in (None, "")]
        label = ": ".join(parts) or "examples"
        out.setdefault((run_v, gen_v), {})[label] = out.get((run_v, gen_v), {}).get(label, 0) + int(r[-1])
    ordered = sorted(out.items(), key=lambda kv: (str(kv[0][0]), kv[0][1] if isinstance(kv[0][1], int) else str(kv[0][1])))
    return {"by_generation": [{"generation": _gen_label(rv, gv, many_runs), "counts": v} for (rv, gv), v in ordered],
            "group_key": gen, "filter_key": " / ".join(outcome) or None}


def _leaves(value: Any, prefix: str, depth: int = 0) -> dict[str, Any]:
    if isinstance(value, Mapping) and depth < 4:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_leaves(v, f"{prefix}.{k}" if prefix else str(k), depth + 1))
        return out
    return {prefix: value}


def generation_metrics(gens: list[Mapping[str, Any]]) -> dict[str, Any]:
    """{labels, series: {path: [value per generation]}} for accuracy-like numbers, also inside JSON columns."""
    many_runs = len({g.get(_RUN_KEY) for g in gens}) > 1
    labels, series = [], {}
    for i, g in enumerate(gens):
        labels.append(_gen_label(g.get(_RUN_KEY), next((g[k] for k in _GEN_KEYS if k in g), i), many_runs))
        for path, v in _leaves(g, "").items():
            if _METRIC_LEAF.search(path.rsplit(".", 1)[-1]) and isinstance(v, (int, float)) and not isinstance(v, bool):
                series.setdefault(path, [None] * len(gens))[i] = float(v)
    return {"labels": labels, "series": series}


def model_tree(models: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Models as a forest by their parent column ([] when there is no id or parent column)."""
    if not models:
        return []
    id_key, parent_key = _pick(list(models[0]), _ID_KEYS), _pick(list(models[0]), _PARENT_KEYS)
    if id_key is None or parent_key is None:
        return []
    ids = {m[id_key] for m in models}
    kids: dict[Any, list[Mapping[str, Any]]] = {}
    for m in models:
        parent = m[parent_key] if m[parent_key] in ids and m[parent_key] != m[id_key] else None
        kids.setdefault(parent, []).append(m)
    roots = [{"id": str(p), "status": "base", "children": []} for p in
             sorted({str(m[parent_key]) for m in models if m[parent_key] and m[parent_key] not in ids})]

    def node(m: Mapping[str, Any], depth: int) -> dict[str, Any]:
        below = kids.get(m[id_key], []) if depth < 100 else []
        return {"id": str(m[id_key]), "status": m.get("status"), "children": [node(k, depth + 1) for k in below]}

    top = [node(m, 0) for m in kids.get(None, [])]
    # a model trained from an unregistered base (the shipped model) hangs under that base's name
    for root in roots:
        root["children"] = [n for n, m in zip(top, kids.get(None, [])) if str(m[parent_key]) == root["id"]]
    return roots + [n for n, m in zip(top, kids.get(None, [])) if not m[parent_key] or m[parent_key] in ids]

"""The flywheel page's data, read by reflection so the dashboard follows those tables as they evolve.

The flywheel tables (fw_generations, fw_examples, models) are written by the flywheel loop; this module
does not import their definitions. It reflects whatever columns exist, shows them as tables, counts
examples per generation and per filter outcome, plots accuracy-like numbers per generation (also
inside JSON columns such as a generation's decision), and draws the model lineage.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from ratchet.ledger import Ledger
from ratchet.ui import views

TABLES = ("fw_generations", "fw_examples", "models")
ROW_LIMIT = 500
_GEN_KEYS = ("generation", "gen", "generation_id", "round")
_OUTCOME_KEYS = ("status", "reason")  # an example's filter outcome: "kept", or "dropped: <reason>"
_ID_KEYS = ("id", "name")
_PARENT_KEYS = ("parent_id", "parent", "base_model", "base")
# numeric leaves worth a line per generation: accuracies and the means a decision compares
_METRIC_LEAF = re.compile(r"(accuracy|^acc$|score|^mean$|mean_cand|mean_parent)$", re.I)


def _present(ledger: Ledger) -> set[str]:
    return set(sa.inspect(ledger.engine).get_table_names()) & set(TABLES)


def flywheel_present(ledger: Ledger) -> bool:
    """Cheap check for the navigation (polled): a flywheel table exists and has a row."""
    with ledger.engine.connect() as c:
        return any(c.execute(sa.text(f'SELECT 1 FROM "{name}" LIMIT 1')).first() for name in sorted(_present(ledger)))


def flywheel_detail(ledger: Ledger) -> dict[str, Any] | None:
    """None when there is no flywheel data (no tables or no rows); else tables, counts and per-generation metrics."""
    md = sa.MetaData()
    tables = {name: sa.Table(name, md, autoload_with=ledger.engine) for name in sorted(_present(ledger))}
    if not tables:
        return None
    with ledger.engine.connect() as c:
        counts = {n: int(c.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()) for n, t in tables.items()}
        if not any(counts.values()):
            return None
        rows = {n: [dict(r) for r in c.execute(_ordered(t).limit(ROW_LIMIT)).mappings()]
                for n, t in tables.items() if n != "fw_examples"}
        examples = example_counts(c, tables.get("fw_examples"))
    gens = rows.get("fw_generations", [])
    return views.clean({
        "counts": {n: counts.get(n, 0) for n in TABLES},
        "generations": gens,
        "generation_columns": list(tables["fw_generations"].columns.keys()) if "fw_generations" in tables else [],
        "models": rows.get("models", []),
        "model_columns": list(tables["models"].columns.keys()) if "models" in tables else [],
        "model_tree": model_tree(rows.get("models", [])),
        "examples": examples,
        "metrics": generation_metrics(gens),
    })


def _ordered(table: sa.Table) -> sa.Select:
    keys = [table.c[k] for k in ("created_at", "run_id", "generation") if k in table.c]
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
    run = ["run_id"] if "run_id" in cols else []
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
    many_runs = len({g.get("run_id") for g in gens}) > 1
    labels, series = [], {}
    for i, g in enumerate(gens):
        labels.append(_gen_label(g.get("run_id"), next((g[k] for k in _GEN_KEYS if k in g), i), many_runs))
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

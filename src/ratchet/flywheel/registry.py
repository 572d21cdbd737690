"""The model registry: every trained model as a plain HF model dir plus a row in the ledger, with lineage.

Files: `<project>/.ratchet/models/<name>/` holds the weights, the tokenizer, `ratchet_train.json` (how it
was trained) and `ratchet_model.json` (the lineage card: parent, dataset hash, training config, metrics,
status). The ledger's `models` table holds the same facts for queries. A model starts as a
`candidate`; the flywheel marks it `promoted` (it becomes the current model) or `rejected` (kept for
audit, never current). `[model] name = "<registry name>"` loads a registry model by name
(the path lookup, `registry_model_dir`, lives in `ratchet.models.registry_paths`, below both
this module and the local backend that calls it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ratchet.ledger.flywheel_store import FlywheelStore
from ratchet.models.registry_paths import REGISTRY_SUBDIR, check_name, model_dir, registry_model_dir

__all__ = ["CARD_FILE", "REGISTRY_SUBDIR", "STATUSES", "check_name", "current_model", "lineage", "model_dir",
           "read_card", "register", "registry_model_dir", "set_status"]

CARD_FILE = "ratchet_model.json"
STATUSES = ("candidate", "promoted", "rejected")


def read_card(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / CARD_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _write_card(path: Path, card: dict[str, Any]) -> None:
    tmp = path / (CARD_FILE + ".tmp")
    tmp.write_text(json.dumps(card, indent=2, default=str))
    tmp.replace(path / CARD_FILE)


def register(store: FlywheelStore, root: Path, *, name: str, project: str, parent: str, run_id: str,
             generation: int, dataset_hash: str, train_config: dict[str, Any], metrics: dict[str, Any]) -> Path:
    """Record a freshly trained model (its weights already at model_dir(root, name)) as a candidate."""
    path = model_dir(root, name)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} holds no model (config.json); train it before registering")
    card = {"name": name, "project": project, "parent": parent, "status": "candidate", "run_id": run_id,
            "generation": generation, "dataset_hash": dataset_hash, "train_config": train_config, "metrics": metrics}
    _write_card(path, card)
    store.register_model(name=name, project=project, parent=parent, path=str(path), status="candidate",
                         run_id=run_id, generation=generation, dataset_hash=dataset_hash,
                         train_config=train_config, metrics=metrics)
    return path


def set_status(store: FlywheelStore, root: Path, name: str, status: str, metrics: dict[str, Any]) -> None:
    """Move a model to promoted or rejected, merging `metrics` (the evaluation) into its record and card."""
    if status not in STATUSES:
        raise ValueError(f"status {status!r}; use one of {STATUSES}")
    row = store.model(name)
    if row is None:
        raise KeyError(f"no registry model named {name!r}")
    merged = {**(row.get("metrics") or {}), **metrics}
    store.update_model(name, status=status, metrics=merged)
    path = Path(row["path"])
    if path.is_dir():
        _write_card(path, {**read_card(path), "status": status, "metrics": merged})


def current_model(store: FlywheelStore, project: str) -> str | None:
    """The newest promoted model of the project, or None when nothing was promoted yet."""
    promoted = store.models(project=project, status="promoted")
    return promoted[-1]["name"] if promoted else None


def lineage(store: FlywheelStore, name: str, limit: int = 100) -> list[dict[str, Any]]:
    """The model and its ancestors, newest first; the chain ends at a model that is not in the registry (the base)."""
    chain: list[dict[str, Any]] = []
    seen: set[str] = set()
    current: str | None = name
    while current and current not in seen and len(chain) < limit:
        seen.add(current)
        row = store.model(current)
        if row is None:
            chain.append({"name": current, "status": "base", "parent": None})
            break
        chain.append(row)
        current = row.get("parent")
    return chain

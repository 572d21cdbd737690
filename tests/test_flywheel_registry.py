"""The model registry: files + ledger rows, status moves, lineage, and loading a registry model by name."""

import json

import pytest

from ratchet.config import ModelSection
from ratchet.flywheel import registry
from ratchet.ledger import Ledger
from ratchet.ledger.flywheel_store import FlywheelStore


@pytest.fixture
def store(tmp_path):
    lg = Ledger(f"sqlite:///{tmp_path / 'l.sqlite'}")
    yield FlywheelStore(lg)
    lg.close()


def fake_weights(root, name):
    path = registry.model_dir(root, name)
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def test_register_promote_reject_and_lineage(tmp_path, store):
    fake_weights(tmp_path, "p-g1")
    fake_weights(tmp_path, "p-g2")
    registry.register(store, tmp_path, name="p-g1", project="p", parent="base", run_id="r", generation=1,
                      dataset_hash="d1", train_config={"lr": 1e-3}, metrics={"train": {"steps": 3}})
    registry.register(store, tmp_path, name="p-g2", project="p", parent="p-g1", run_id="r", generation=2,
                      dataset_hash="d2", train_config={}, metrics={})
    assert registry.current_model(store, "p") is None
    registry.set_status(store, tmp_path, "p-g1", "promoted", {"dev_mean": 0.8})
    registry.set_status(store, tmp_path, "p-g2", "rejected", {"dev_mean": 0.7})
    assert registry.current_model(store, "p") == "p-g1"  # a rejected model never becomes current
    row = store.model("p-g1")
    assert row["metrics"] == {"train": {"steps": 3}, "dev_mean": 0.8} and row["dataset_hash"] == "d1"
    card = json.loads((registry.model_dir(tmp_path, "p-g2") / registry.CARD_FILE).read_text())
    assert card["status"] == "rejected" and card["parent"] == "p-g1"
    assert [m["name"] for m in registry.lineage(store, "p-g2")] == ["p-g2", "p-g1", "base"]


def test_register_needs_weights_and_a_safe_name(tmp_path, store):
    with pytest.raises(FileNotFoundError):
        registry.register(store, tmp_path, name="nothing", project="p", parent="b", run_id="r", generation=1,
                          dataset_hash="", train_config={}, metrics={})
    with pytest.raises(ValueError):
        registry.model_dir(tmp_path, "../escape")
    assert registry.registry_model_dir(tmp_path, "../escape") is None


def test_local_backend_resolves_a_registry_name(tmp_path):
    from ratchet.models import _local_name

    path = fake_weights(tmp_path, "arith-g1-abc")
    assert _local_name("arith-g1-abc", tmp_path) == str(path.resolve())
    assert _local_name("smollm2-135m", tmp_path) == "smollm2-135m"  # built-in names are untouched
    assert ModelSection(name="arith-g1-abc").name == "arith-g1-abc"

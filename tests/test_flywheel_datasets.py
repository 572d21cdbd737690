"""Examples: stable ids, the fresh/old mix, content hashes, and exports HF `datasets` can load."""

import json

import pytest

from ratchet.flywheel.datasets import (
    PAIR,
    SFT,
    Example,
    Provenance,
    dataset_hash,
    export,
    mix_generations,
    training_mix,
)


def ex(task: str, gen: int = 1, epoch: int = 0, kind: str = SFT, reply: str = "4") -> Example:
    p = Provenance(run_id="r", generation=gen, task_id=task, split="train", model="m", harness="h", harness_commit="abc",
                   verifier="v", score=1.0, seed=7, eval_id="e", epoch=epoch, call_index=0,
                   rejected_epoch=1 if kind == PAIR else None)
    return Example(kind=kind, prompt=[{"role": "user", "content": f"q {task}"}], reply=reply,
                   rejected="5" if kind == PAIR else None, provenance=p)


def test_ids_are_stable_and_distinct():
    assert ex("a").id == ex("a").id
    assert len({ex("a").id, ex("a", epoch=1).id, ex("a", gen=2).id, ex("a", kind=PAIR).id}) == 4
    again = Example.from_json(json.loads(json.dumps(ex("a", kind=PAIR).to_json())))
    assert again.id == ex("a", kind=PAIR).id and again.provenance.harness_commit == "abc"


def test_mix_keeps_all_fresh_and_old_at_the_ratio():
    fresh = [ex(f"f{i}", gen=2) for i in range(10)]
    old = [ex(f"o{i}", gen=1) for i in range(40)]
    mixed = mix_generations(fresh, old, 0.5, seed=0)
    assert len(mixed) == 20 and set(e.id for e in fresh) <= set(e.id for e in mixed)
    assert len(mix_generations(fresh, old, 1.0, seed=0)) == 10
    assert len(mix_generations(fresh, old[:3], 0.25, seed=0)) == 13  # all the old data there is
    assert mix_generations(fresh, old, 0.5, seed=1) == mix_generations(fresh, old, 0.5, seed=1)
    with pytest.raises(ValueError):
        mix_generations(fresh, old, 0.0, seed=0)


def test_training_mix_takes_the_generations_fresh_data_and_the_kinds_its_method_trains_on():
    kept = [(1, ex(f"o{i}", gen=1)) for i in range(6)] + [(2, ex(f"f{i}", gen=2)) for i in range(3)]
    kept += [(2, ex("p", gen=2, kind=PAIR)), (3, ex("later", gen=3))]
    sft, pairs, stats = training_mix(kept, 2, 0.5, seed=0, method="both")
    assert {e.provenance.task_id for e in sft} >= {"f0", "f1", "f2"} and len(sft) == 6  # 3 fresh + 3 old
    assert "later" not in {e.provenance.task_id for e in sft}  # a later generation's data is not g's to train on
    assert [e.provenance.task_id for e in pairs] == ["p"]
    assert stats == {"sft_fresh": 3, "sft_old": 3, "pairs_fresh": 1, "pairs_old": 0}
    assert training_mix(kept, 2, 0.5, seed=0, method="sft")[1] == [] and training_mix(kept, 2, 0.5, 0, "dpo")[0] == []


def test_dataset_hash_is_order_free_and_content_sensitive():
    a, b = ex("a"), ex("b")
    assert dataset_hash([a, b]) == dataset_hash([b, a])
    assert dataset_hash([a, b]) != dataset_hash([a, ex("b", reply="5")])


def test_export_writes_standard_records(tmp_path):
    paths = export([ex("a"), ex("b"), ex("a", kind=PAIR)], tmp_path)
    sft = [json.loads(line) for line in paths["sft"].read_text().splitlines()]
    assert [sorted(r) for r in sft] == [["id", "messages"]] * 2
    assert sft[0]["messages"] == [{"role": "user", "content": "q a"}, {"role": "assistant", "content": "4"}]
    pairs = [json.loads(line) for line in paths["pairs"].read_text().splitlines()]
    assert sorted(pairs[0]) == ["chosen", "id", "prompt", "rejected"]


@pytest.mark.slow  # importing datasets takes ~10 s on a busy 2-core machine
def test_export_loads_with_hf_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    paths = export([ex("a"), ex("b"), ex("a", kind=PAIR)], tmp_path)
    sft = datasets.load_dataset("json", data_files=str(paths["sft"]), split="train")
    assert sft.num_rows == 2 and sft[0]["messages"][-1] == {"role": "assistant", "content": "4"}
    pairs = datasets.load_dataset("json", data_files=str(paths["pairs"]), split="train")
    assert pairs.column_names == ["id", "prompt", "chosen", "rejected"] and pairs[0]["rejected"][0]["content"] == "5"
    prov = [json.loads(line) for line in paths["provenance"].read_text().splitlines()]
    assert {p["id"] for p in prov} == {ex("a").id, ex("b").id, ex("a", kind=PAIR).id}
    assert all(p["split"] == "train" and p["harness_commit"] == "abc" for p in prov)

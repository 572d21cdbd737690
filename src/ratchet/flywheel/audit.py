"""Read-only audits of a flywheel's data, for `ratchet data lineage` and `ratchet data contamination`:
everything about one example, and the train tasks whose input contains a dev/holdout/test item."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ratchet.flywheel import registry


def example_lineage(cfg, ledger, store, example_id: str) -> dict[str, Any] | None:
    """One example (id or unique prefix): task, split, rollout, model and its ancestry, harness, verifier,
    seed, why it was dropped, and which trained models used it. None when there is no such example."""
    from ratchet.suites import build_suite

    row = store.example(example_id)
    if row is None:
        return None
    ex, detail = row["data"]["example"], row["data"].get("detail") or {}
    prov = ex["provenance"]
    suite = build_suite(cfg.suite, cfg.root)
    task = next((t for t in suite.tasks() if t.id == prov["task_id"]), None)
    rollout = next((t for t in ledger.rollouts(prov["eval_id"]) if t.task_id == prov["task_id"]
                    and t.epoch == prov["epoch"]), None) if not prov.get("star") else None
    used_by = [m["name"] for m in store.models() if m.get("run_id") == prov["run_id"]
               and ex["id"] in (ledger.get_state(prov["run_id"], f"trainset:g{m.get('generation')}", []) or [])]
    return {
        "example": ex["id"], "kind": ex["kind"], "status": row["status"], "dropped_because": row["reason"],
        "drop_detail": detail or None, "task": {"id": prov["task_id"], "split": prov["split"],
                                                "input": task.input if task else None,
                                                "gold": suite.gold(prov["task_id"]) if task else None},
        "generation": prov["generation"], "run": prov["run_id"],
        "model": {"name": prov["model"], "ancestry": [m["name"] for m in registry.lineage(store, prov["model"])]},
        "harness": {"fingerprint": prov["harness"], "commit": prov["harness_commit"]},
        "verifier": prov["verifier"], "score": prov["score"], "sampling_seed": prov["seed"],
        "rollout": {"eval_id": prov["eval_id"], "epoch": prov["epoch"], "call_index": prov["call_index"],
                    "output": rollout.output if rollout else None, "feedback": rollout.feedback if rollout else None,
                    "signals": ex.get("signals")},
        "pair": {"rejected_score": prov.get("rejected_score"), "rejected_seed": prov.get("rejected_seed"),
                 "rejected_epoch": prov.get("rejected_epoch")} if ex["kind"] == "pair" else None,
        "star_rationalized": prov.get("star", False), "judge": ex.get("judge"),
        "trained_into": used_by,
        "text": {"prompt": ex["prompt"], "reply": ex["reply"], "rejected": ex.get("rejected"),
                 "tool_calls": ex.get("tool_calls") or []},  # the reply's own tool calls (a tool-using call)
    }


@dataclass
class Contaminated:
    task_id: str
    input: str
    hits: list[Any]  # contamination hits: .split, .task_id


def contaminated_train_tasks(cfg, fw) -> tuple[list[Contaminated], int]:
    """The train tasks whose input contains a dev/holdout/test item, as the flywheel's filter would see
    them (`fw`: the flywheel settings), and the number of train tasks. Nothing is scored."""
    from ratchet.flywheel.contamination import index_for_suite
    from ratchet.suites import build_suite, tasks_for_split

    suite = build_suite(cfg.suite, cfg.root)
    fractions = cfg.suite.splits.model_dump()
    index = index_for_suite(suite, fractions, cfg.suite.split_salt, n=fw.ngram, threshold=fw.contamination_threshold,
                            boilerplate_df=fw.boilerplate_df)
    train = tasks_for_split(suite, "train", fractions, cfg.suite.split_salt)
    found = [Contaminated(t.id, t.input, hits) for t in train if (hits := index.check(t.input))]
    return found, len(train)

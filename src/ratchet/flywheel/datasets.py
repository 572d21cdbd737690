"""Training examples with provenance, the training set of a generation, and export to standard formats.

An example is one model call of a verified rollout: the request messages the model saw and the reply
it gave (SFT), or a preferred and a rejected reply to the same request (a preference pair: verified-good
vs verified-wrong, or labelled by the AI judge; `Provenance.label` says which).
Every example carries where it came from - task, split, generation, model, harness, verifier, score,
sampling seed - so any row of an exported file can be traced back (`ratchet data lineage ID`).

Exports are plain JSONL that HF `datasets.load_dataset("json", data_files=...)` reads:
  SFT:        {"id", "messages": [{"role", "content"}, ...]}                      (chat format)
  preference: {"id", "prompt": [messages], "chosen": [assistant msg], "rejected": [assistant msg]}
A model call that offered tools keeps its tool turns in the OpenAI shape (assistant messages with `tool_calls`,
`tool` messages; its target is the reply's text plus its own tool calls) and the tools it offered; a file with
such rows has every message in one shape and `tools` as JSON text (tool_turns.py, docs/flywheel.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ratchet.flywheel.config import TrainConfig
from ratchet.flywheel.tool_turns import has_tool_turns, target_message, target_text, uniform_records
from ratchet.models import tool_prompt

SFT, PAIR = "sft", "pair"
# who labelled an example: the suite's checker ("outcome"; a pair: verified-good vs verified-wrong), or the AI
# judge: its grade on a task without a checker ("ai_grade"), its pairwise preference (RLAIF, "ai_pairwise"), or
# its constitution revision chosen over the original reply (CAI, "ai_revision"; re-checked where a checker exists)
LABELS = ("outcome", "ai_grade", "ai_pairwise", "ai_revision")


@dataclass(frozen=True)
class Provenance:
    run_id: str
    generation: int
    task_id: str
    split: str  # always "train"; kept so an audit can prove it
    model: str  # the model version that produced the reply
    harness: str  # harness fingerprint
    harness_commit: str | None  # git commit of the harness dir, when it is in a repository
    verifier: str  # scorer identity (suite name @ fingerprint) plus the judge, if any
    score: float  # outcome score of the rollout (the chosen one, for a pair)
    seed: int  # sampling seed of the model call
    eval_id: str  # the generation's evaluation in the ledger
    epoch: int  # which of the K samples
    call_index: int  # which model call of the rollout
    rejected_score: float | None = None  # pairs: the outcome score of the rejected reply
    rejected_seed: int | None = None
    rejected_epoch: int | None = None
    star: bool = False  # the reply was rationalised with a gold-answer hint (STaR)
    label: str = "outcome"  # who decided it is good (or better): one of LABELS

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"provenance label must be one of {LABELS}, got {self.label!r}")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Example:
    kind: str  # sft | pair
    prompt: list[dict[str, str]]  # the request messages, as the model saw them
    reply: str  # the (chosen) assistant reply
    provenance: Provenance
    rejected: str | None = None  # pairs only
    signals: dict[str, Any] = field(default_factory=dict)  # process signals, kept apart from the score
    judge: dict[str, Any] | None = None  # the AI judge's verdict, if one ran
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # the tool calls the (chosen) reply made
    tools: dict[str, Any] | None = None  # the tools the call offered (Tools.to_json()), if any

    @property
    def id(self) -> str:
        """Stable: the same rollout call gives the same id, so a resumed generation does not duplicate rows."""
        p = self.provenance
        key = [self.kind, p.run_id, p.generation, p.task_id, p.epoch, p.call_index, p.rejected_epoch, p.star]
        if p.label != "outcome":  # an AI-labelled pair may join the same two rollouts as a checker pair
            key.append(p.label)
        return "ex-" + hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]

    @property
    def text(self) -> str:
        """Everything a model would train on, for the length, duplicate and contamination checks."""
        prompt = tool_prompt.render(self.prompt, None) if self.has_tool_turns else self.prompt
        parts = [m.get("content", "") for m in prompt] + [self.target]
        if self.rejected is not None:
            parts.append(self.rejected)
        return "\n".join(parts)

    @property
    def target(self) -> str:
        """The text the model learns to write: the reply, then its tool calls' <tool_call> blocks, if any."""
        return target_text(self.reply, self.tool_calls)

    @property
    def has_tool_turns(self) -> bool:
        return has_tool_turns(self.prompt, self.tools, self.tool_calls)

    def sft_record(self) -> dict[str, Any]:
        record = {"id": self.id, "messages": [*self.prompt, target_message(self.reply, self.tool_calls)]}
        return {**record, "tools": list(self.tools["functions"])} if self.tools else record

    def pair_record(self) -> dict[str, Any]:
        if self.rejected is None:
            raise ValueError(f"{self.id} is an SFT example; it has no rejected reply")
        record = {"id": self.id, "prompt": list(self.prompt), "chosen": [target_message(self.reply, self.tool_calls)],
                  "rejected": [{"role": "assistant", "content": self.rejected}]}
        return {**record, "tools": list(self.tools["functions"])} if self.tools else record

    def to_json(self) -> dict[str, Any]:
        out = {"id": self.id, "kind": self.kind, "prompt": self.prompt, "reply": self.reply, "rejected": self.rejected,
               "provenance": self.provenance.to_json(), "signals": self.signals, "judge": self.judge}
        # only when there are some: an example without tools keeps its content hash (dataset_hash)
        return {**out, **({"tool_calls": self.tool_calls} if self.tool_calls else {}),
                **({"tools": self.tools} if self.tools else {})}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Example:
        return cls(kind=d["kind"], prompt=list(d["prompt"]), reply=d["reply"], rejected=d.get("rejected"),
                   provenance=Provenance(**d["provenance"]), signals=dict(d.get("signals") or {}), judge=d.get("judge"),
                   tool_calls=list(d.get("tool_calls") or []), tools=d.get("tools"))


def mix_generations(fresh: Sequence[Example], old: Sequence[Example], fresh_ratio: float, seed: int) -> list[Example]:
    """The training set: all fresh examples plus as many old ones as keep the fresh share at `fresh_ratio`.

    Old data is never thrown away (it stays in the ledger); the ratio only sets how much of it a
    generation trains on. Re-training on a model's own outputs alone narrows it (model collapse);
    keeping earlier verified data in the mix is the usual guard.
    """
    if not 0.0 < fresh_ratio <= 1.0:
        raise ValueError(f"fresh_ratio must be in (0, 1], got {fresh_ratio}")
    if not fresh:
        n_old = len(old) if fresh_ratio < 1.0 else 0
    else:
        n_old = min(len(old), round(len(fresh) * (1.0 - fresh_ratio) / fresh_ratio))
    rng = random.Random(seed)
    chosen_old = rng.sample(list(old), n_old) if n_old < len(old) else list(old)
    return sorted([*fresh, *chosen_old], key=lambda e: e.id)


def training_mix(kept: Sequence[tuple[int, Example]], g: int, fresh_ratio: float, seed: int,
                 method: str) -> tuple[list[Example], list[Example], dict[str, int]]:
    """Generation g's SFT and pair sets from the run's kept (generation, example)s: g's fresh examples plus
    earlier generations' at `fresh_ratio` (mix_generations), each kind only when `method` trains on it."""
    out: dict[str, list[Example]] = {}
    stats: dict[str, int] = {}
    for kind, label in ((SFT, "sft"), (PAIR, "pairs")):
        fresh = [e for gen, e in kept if gen == g and e.kind == kind]
        old = [e for gen, e in kept if gen < g and e.kind == kind]
        out[kind] = mix_generations(fresh, old, fresh_ratio, seed=seed + g)
        stats[f"{label}_fresh"], stats[f"{label}_old"] = len(fresh), len(out[kind]) - len(fresh)
    return (out[SFT] if method in ("sft", "both") else [], out[PAIR] if method in ("dpo", "both") else [], stats)


def dataset_hash(examples: Iterable[Example]) -> str:
    """A content hash of a training set (order-free): names the data a model was trained on."""
    h = hashlib.sha256()
    for record in sorted(json.dumps(e.to_json(), sort_keys=True) for e in examples):
        h.update(record.encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n


def export(examples: Sequence[Example], out_dir: Path) -> dict[str, Path]:
    """Write sft.jsonl (chat messages), pairs.jsonl (prompt/chosen/rejected) and provenance.jsonl; return paths."""
    sft = [e for e in examples if e.kind == SFT]
    pairs = [e for e in examples if e.kind == PAIR]
    paths = {"sft": out_dir / "sft.jsonl", "pairs": out_dir / "pairs.jsonl", "provenance": out_dir / "provenance.jsonl"}
    write_jsonl(paths["sft"], uniform_records([e.sft_record() for e in sft], ["messages"]))
    write_jsonl(paths["pairs"], uniform_records([e.pair_record() for e in pairs], ["prompt", "chosen", "rejected"]))
    write_jsonl(paths["provenance"], ({"id": e.id, "kind": e.kind, **e.provenance.to_json()} for e in examples))
    return paths


@dataclass
class TrainingData:
    """What the filter and data stages leave for training: the mixed training set and the counts."""

    sft: list[Example]
    pairs: list[Example]
    dataset_hash: str
    counts: dict[str, Any]  # rollout, filter and training-set counts (the generation's ledger row)
    filter_sft: dict[str, int]
    filter_pairs: dict[str, int]

    def summary(self) -> str:
        c = self.counts
        contamination = self.filter_sft["contamination"] + self.filter_pairs["contamination"]
        return (f"{c.get('verified_good', 0)}/{c.get('rollouts', 0)} rollouts verified; kept {self.filter_sft['kept']} "
                f"sft + {self.filter_pairs['kept']} pairs; contamination dropped {contamination}; "
                f"training on {c['train_set']}")


def no_data_reason(data: TrainingData, train: TrainConfig) -> str | None:
    """Why the generation trains nothing (then it is skipped and the current model stays), or None. No I/O."""
    if data.sft or data.pairs or train.grpo:
        return None
    return (f"no training data: nothing survived verification and filtering for method {train.method!r} "
            "(see the data card); the current model stays")

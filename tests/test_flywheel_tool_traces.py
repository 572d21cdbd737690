"""The flywheel on multi-step traces: a generation whose harness calls the python skill as a tool exports SFT
rows with the tool turns in the OpenAI shape, HF `datasets` loads them next to plain single-call rows, each
row traces back to its rollout call, and training renders the tool turns as the model reads them."""

import asyncio
import json
import re

import pytest

from conftest import PROJECT_TOML, fake_project, make_project_dir
from ratchet.flywheel.audit import example_lineage
from ratchet.flywheel.datasets import SFT, Example, Provenance, export
from ratchet.flywheel.engine import Flywheel
from ratchet.flywheel.train import TRAIN_CONFIG_FILE, TrainResult, pair_rows, sft_rows
from ratchet.ledger.flywheel_store import FlywheelStore
from ratchet.models.scripted import ScriptedModel

# odd-numbered tasks: one plain call, as every shipped harness makes; even ones: python as a tool, then the answer
HARNESS = '''
def solve(task, ctx):
    if int(task.id[1:]) % 2:
        return ctx.llm(task.input)
    messages = [{"role": "user", "content": task.input}]
    for _ in range(3):
        reply = ctx.llm(messages, tools=["python"])
        messages.append(reply)
        if not reply["tool_calls"]:
            return reply["content"]
        messages += [ctx.call(call) for call in reply["tool_calls"]]
'''
PARAMS = '[skills]\nlibrary = ["python"]\nenabled = ["python"]\n'
FLYWHEEL = """
[flywheel]
generations = 1
samples_per_task = 1
eval_epochs = 1
task_limit = 6
eval_limit = 2

[flywheel.train]
max_steps = 1
"""
SPLITS = ("train = 0.2\ndev = 0.4\nholdout = 0.3", "train = 0.4\ndev = 0.3\nholdout = 0.2")


def reply(messages, params):
    """The Hermes convention, as the local backend speaks it: a tool call, then the answer its result gave."""
    last = messages[-1]["content"]
    result = re.search(r"<tool_response>\n(.*?)\n</tool_response>", last, re.S)
    if result:
        return f"The program printed {result.group(1)}, so the answer is {result.group(1)}."
    a, b = map(int, re.search(r"(\d+) \+ (\d+)", last).groups())
    if not any("<tools>" in m["content"] for m in messages):
        return str(a + b)
    return '<tool_call>' + json.dumps({"name": "python", "arguments": {"code": f"print({a} + {b})"}}) + '</tool_call>'


class FakeTrainer:
    def __init__(self):
        self.sft = []

    def __call__(self, base_dir, sft, pairs, cfg, out, log=None, should_stop=None):
        self.sft = list(sft)
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        (out / TRAIN_CONFIG_FILE).write_text(json.dumps({"metrics": {}, "seconds": 0.1}))
        return TrainResult(path=out, method=cfg.method, metrics={}, seconds=0.1)


def test_a_generation_on_tool_traces_exports_tool_turns_hf_loadable_with_lineage(tmp_path):
    datasets = pytest.importorskip("datasets")
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    toml = PROJECT_TOML.replace(*SPLITS).replace('backend = "scripted"\nname = "arith-fake"',
                                                 f'backend = "local"\nname = "{base}"') + FLYWHEEL
    root = make_project_dir(tmp_path / "proj", n_tasks=20, toml=toml, harness=HARNESS, params=PARAMS)
    model = ScriptedModel(reply)
    proj = fake_project(root, model=model)
    trainer = FakeTrainer()
    summary = asyncio.run(Flywheel(proj, train_fn=trainer, model_factory=lambda name: model).run())
    assert summary.status == "finished"

    out = proj.cfg.state_dir / "flywheel" / summary.run_id / "g1"
    rows = [json.loads(line) for line in (out / "sft.jsonl").read_text().splitlines()]
    lineage = {r["id"]: r for r in map(json.loads, (out / "provenance.jsonl").read_text().splitlines())}
    tool_rows = [r for r in rows if any(m["tool_calls"] for m in r["messages"])]
    plain = [r for r in rows if len(r["messages"]) == 2 and not r["messages"][1]["tool_calls"]]
    assert tool_rows and plain and {r["id"] for r in rows} == {e.id for e in trainer.sft}

    # the last call holds the whole conversation: user, the assistant's tool call, the tool's result, the answer
    final = next(r for r in tool_rows if len(r["messages"]) == 4)
    user, call, result, answer = final["messages"]
    assert call["role"] == "assistant" and call["content"] == "" and call["tool_calls"][0]["type"] == "function"
    assert call["tool_calls"][0]["function"]["name"] == "python"
    assert json.loads(call["tool_calls"][0]["function"]["arguments"])["code"].startswith("print(")
    assert result["role"] == "tool" and result["tool_call_id"] == call["tool_calls"][0]["id"] and result["name"] == "python"
    total = str(sum(map(int, re.findall(r"\d+", user["content"]))))
    assert result["content"] == total and answer == {"role": "assistant", "content": f"The program printed {total}, "
                                                     f"so the answer is {total}.", "tool_calls": [],
                                                     "tool_call_id": "", "name": ""}
    # the first call's example: its target is the tool call itself
    first = next(r for r in tool_rows if len(r["messages"]) == 2)
    assert first["messages"][1]["tool_calls"] and json.loads(first["tools"])[0]["function"]["name"] == "python"
    assert all(json.loads(r["tools"]) == [] for r in plain)

    for r in rows:  # every row traces back to its rollout's model call
        p = lineage[r["id"]]
        assert p["eval_id"] and p["split"] == "train" and isinstance(p["seed"], int)
        audit = example_lineage(proj.cfg, proj.ledger, FlywheelStore(proj.ledger), r["id"])
        assert audit["rollout"]["output"] is not None and audit["trained_into"]
    by_task = {}
    for r in tool_rows:
        by_task.setdefault(lineage[r["id"]]["task_id"], []).append(lineage[r["id"]]["call_index"])
    assert all(sorted(calls) == [0, 1] for calls in by_task.values())  # a turn per model call of the rollout

    # HF datasets reads the mixed file, also when its chunks split tool rows from plain ones
    for chunksize in (None, 512):
        kw = {"chunksize": chunksize} if chunksize else {}
        ds = datasets.load_dataset("json", data_files=str(out / "sft.jsonl"), split="train",
                                   cache_dir=str(tmp_path / f"hf{chunksize}"), **kw)
        assert ds.num_rows == len(rows)
        loaded = {r["id"]: r for r in ds}
        assert loaded[final["id"]]["messages"] == final["messages"]
        assert loaded[plain[0]["id"]]["messages"][1]["content"] == plain[0]["messages"][1]["content"]


def tool_example() -> Example:
    p = Provenance(run_id="r", generation=1, task_id="t", split="train", model="m", harness="h", harness_commit=None,
                   verifier="v", score=1.0, seed=3, eval_id="e", epoch=0, call_index=1)
    call = {"id": "call_0", "type": "function", "function": {"name": "python", "arguments": '{"code": "print(6*7)"}'}}
    prompt = [{"role": "user", "content": "What is 6*7?"}, {"role": "assistant", "content": "", "tool_calls": [call]},
              {"role": "tool", "tool_call_id": "call_0", "name": "python", "content": "42"}]
    tools = {"functions": [{"type": "function", "function": {"name": "python", "description": "Run Python.",
                                                            "parameters": {"type": "object", "properties": {}}}}],
             "choice": "auto"}
    return Example(kind=SFT, prompt=prompt, reply="Let me check.", provenance=p, tools=tools,
                   tool_calls=[{**call, "id": "call_1", "function": {"name": "python", "arguments": '{"code": "print(42)"}'}}])


def test_training_text_renders_tool_calls_and_results_as_the_model_reads_them():
    row = sft_rows([tool_example()])[0]
    assert all(set(m) == {"role", "content"} for m in row["prompt"] + row["completion"])  # any chat template formats it
    system, user, called, result = row["prompt"]
    assert system["role"] == "system" and "<tools>" in system["content"] and '"name": "python"' in system["content"]
    assert called["content"] == '<tool_call>\n{"name": "python", "arguments": {"code": "print(6*7)"}}\n</tool_call>'
    assert result == {"role": "user", "content": "<tool_response>\n42\n</tool_response>"}
    target = row["completion"][0]["content"]
    assert target.startswith("Let me check.\n<tool_call>") and '"arguments": {"code": "print(42)"}' in target
    again = Example.from_json(json.loads(json.dumps(tool_example().to_json())))
    assert again.tool_calls == tool_example().tool_calls and again.tools == tool_example().tools
    assert "<tool_response>\n42\n</tool_response>" in again.text and "print(42)" in again.text
    pair = Example(**{**tool_example().__dict__, "kind": "pair", "rejected": "43"})
    assert pair_rows([pair])[0]["prompt"] == row["prompt"]


def test_export_puts_tool_rows_first_in_one_message_shape(tmp_path):
    plain = Example(kind=SFT, prompt=[{"role": "user", "content": "q"}], reply="4",
                    provenance=Provenance(**{**tool_example().provenance.to_json(), "task_id": "a", "call_index": 0}))
    rows = [json.loads(line) for line in export([plain, tool_example()], tmp_path)["sft"].read_text().splitlines()]
    assert [r["id"] for r in rows] == [tool_example().id, plain.id]
    assert all(set(m) == {"role", "content", "tool_calls", "tool_call_id", "name"} for r in rows for m in r["messages"])
    assert rows[1]["messages"][1] == {"role": "assistant", "content": "4", "tool_calls": [], "tool_call_id": "", "name": ""}
    assert json.loads(rows[0]["tools"])[0]["function"]["name"] == "python" and rows[1]["tools"] == "[]"
    only_plain = export([plain], tmp_path / "plain")["sft"].read_text()  # a file without tool turns: as before
    assert json.loads(only_plain)["messages"][1] == {"role": "assistant", "content": "4"}

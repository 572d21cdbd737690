"""The parent side of an episode: start the harness in the sandbox and serve what it asks for.

The harness program never runs in this process. It runs in `worker.py` inside the sandbox and asks
for model calls and the python/memory skills over a pipe; this side admits each request against the
episode budget and loop detector, serves it, and records everything into the trajectory.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ratchet.harness.budget import EpisodeBudget, EpisodeLimits
from ratchet.harness.clock import EpisodeClock
from ratchet.harness.loader import Harness
from ratchet.models.base import ChatModel, ModelUnavailable, ask
from ratchet.sandbox import PIPE_LIMIT, Sandbox, SandboxLimits, python_argv
from ratchet.types import SamplingParams, Task, Tools, Trajectory

WORKER_SOURCE = Path(__file__).with_name("worker.py")
TECHNIQUES_SOURCE = Path(__file__).with_name("techniques.py")  # the harness library the worker offers through ctx
TOOL_CALLS_SOURCE = Path(__file__).with_name("tool_calls.py")  # ctx.llm(tools=...) and ctx.call
LOG_TAIL = 4000


@dataclass
class EpisodeServices:
    """What the parent lends an episode. Shared by all episodes of an evaluation."""

    model: ChatModel
    sandbox: Sandbox
    limits: EpisodeLimits
    python_sandbox: Sandbox | None = None  # for the python skill; small limits
    recall: Callable[[str], str] | None = None  # the memory skill: query -> relevant lessons (evolve/memory_skill.py)
    memory_version: str | None = None  # names the lessons `recall` serves in every evaluation's id
    demos: list[dict[str, Any]] = field(default_factory=list)  # the demo pool (`ctx.demos`): train examples only
    demos_version: str | None = None  # names the pool in every evaluation's id (evolve/demos.py)


def offers_demos(harness: Harness, services: EpisodeServices) -> bool:
    """Whether episodes of `harness` get the demo pool: there is one, and the harness's `demos` knob is above 0
    (so a harness that asks for no demos runs, and is identified, exactly as without a pool)."""
    knob = harness.params.knobs.get("demos")
    value = None if knob is None or isinstance(knob.value, bool) else knob.value
    return bool(services.demos) and isinstance(value, (int, float)) and value > 0


def uses_memory(harness: Harness, services: EpisodeServices) -> bool:
    """Whether episodes of `harness` can read lessons: it enables the memory skill and there are lessons to read."""
    return services.recall is not None and "memory" in harness.params.skills_enabled


def call_seed(episode_seed: int, call_index: int) -> int:
    """Per-call sampling seed: the same for a candidate and its parent, so their runs are paired."""
    digest = hashlib.sha256(f"{episode_seed}:{call_index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


class _Episode:
    def __init__(self, harness: Harness, task: Task, services: EpisodeServices, seed: int, epoch: int):
        self.harness, self.task, self.svc, self.seed = harness, task, services, seed
        self.traj = Trajectory(task_id=task.id, epoch=epoch, seed=seed)
        self.budget = EpisodeBudget(services.limits)
        self.clock = EpisodeClock(services.limits.timeout_s)
        self.calls = 0
        self.ended = asyncio.Event()
        self.unavailable: ModelUnavailable | None = None

    def setup_message(self) -> dict[str, Any]:
        return {
            "task": {"id": self.task.id, "input": self.task.input, "metadata": self.task.metadata},
            "params": self.harness.params.values(),
            "skills_enabled": list(self.harness.params.skills_enabled),
            "budget": {"steps_left": self.budget.steps_left, "tokens_left": self.budget.tokens_left},
            **({"demos": self.svc.demos} if offers_demos(self.harness, self.svc) else {}),
        }

    def end(self, error: str | None = None) -> None:
        if error and not self.traj.error:
            self.traj.error = error
        self.ended.set()

    async def handle(self, msg: dict[str, Any], reply: Callable[[dict[str, Any]], None]) -> None:
        op = msg.get("op")
        if op == "done":
            self.traj.output = msg.get("output")
            self.end(msg.get("error"))
            return
        if op == "tool":  # a local tool ran inside the sandbox; record it as a step
            self.traj.tool_calls.append({k: msg.get(k) for k in ("name", "args", "result", "error", "call_id")
                                         if k != "call_id" or msg.get(k)})
            if msg.get("error"):
                self.traj.tool_errors += 1
            why = self.budget.admit({"op": "tool", "name": msg.get("name"), "args": msg.get("args")})
            if why:
                self.traj.loop = self.budget.loop
                return self.end(why)
            return reply({"id": msg.get("id"), "ok": True})
        why = self.budget.admit({k: msg.get(k) for k in ("op", "name", "messages", "params", "args", "kwargs")})
        if why:
            self.traj.loop = self.budget.loop
            reply({"id": msg.get("id"), "ok": False, "error": why})
            return self.end(why)
        try:
            result = await (self._llm(msg) if op == "llm" else self._skill(msg))
        except ModelUnavailable as e:  # the endpoint's fault, not the program's: end it, record nothing
            self.unavailable = e
            self.end(f"model unavailable: {e}")
            return reply({"id": msg.get("id"), "ok": False, "error": f"model unavailable: {e}"})
        except Exception as e:  # a refused or failed request is reported to the program, which may recover
            self.traj.tool_errors += op != "llm"
            reply({"id": msg.get("id"), "ok": False, "error": f"{type(e).__name__}: {e}"})
            return
        reply({"id": msg.get("id"), "ok": True, **result, "steps_left": self.budget.steps_left,
               "tokens_left": self.budget.tokens_left})

    async def _llm(self, msg: dict[str, Any]) -> dict[str, Any]:
        raw = dict(msg.get("params") or {})
        raw.setdefault("seed", call_seed(self.seed, self.calls))
        self.calls += 1
        params = SamplingParams.from_json(raw)
        messages = list(msg.get("messages") or [])
        tools = _tools(msg.get("tools"))
        with self.clock.waiting():
            completion = await ask(self.svc.model, messages, params, tools)
        self.budget.charge(completion.prompt_tokens + completion.completion_tokens)
        self.traj.tokens = self.budget.tokens
        self.traj.prompt_tokens += completion.prompt_tokens
        self.traj.completion_tokens += completion.completion_tokens
        record = {"request": messages, "params": params.to_json(), "replies": completion.texts, "cached": completion.cached}
        if tools:
            # the specs too (not only names): the flywheel renders a training example as the model read the call
            record.update(tools=tools.names, tool_specs=tools.to_json(), tool_calls=completion.tool_calls)
        self.traj.messages.append(record)
        return {"texts": completion.texts, "tool_calls": completion.tool_calls}

    async def _skill(self, msg: dict[str, Any]) -> dict[str, Any]:
        name, args, kwargs = msg.get("name"), msg.get("args") or [], msg.get("kwargs") or {}
        if name == "python":
            code = kwargs.get("code", args[0] if args else "")
            box = self.svc.python_sandbox or self.svc.sandbox
            res = await box.run(python_argv("snippet.py"), files={"snippet.py": str(code)})
            result = {"stdout": res.stdout, "stderr": res.stderr, "returncode": res.returncode, "error": res.reason}
            failed = res.returncode != 0
        elif name == "memory":
            query = kwargs.get("query", args[0] if args else "")
            result, failed = (self.svc.recall(str(query)) if self.svc.recall else ""), False
        else:
            raise ValueError(f"the parent serves only the python and memory skills, not {name!r}")
        self.traj.tool_calls.append({"name": name, "args": args, "kwargs": kwargs, "result": result,
                                     **({"call_id": msg["call_id"]} if msg.get("call_id") else {})})
        self.traj.tool_errors += failed
        return {"result": result}


def _tools(raw: Any) -> Tools | None:
    """The tools of a worker's model call; a malformed spec is the program's error (a ValueError it sees)."""
    if not raw:
        return None
    if not isinstance(raw, dict):
        raise ValueError(f"tools must come as {{'functions': [...], 'choice': ...}}, got {raw!r:.200}")
    return Tools.from_json(raw)


_SIGNAL_MEANING = {signal.SIGXCPU: "the cpu limit", signal.SIGXFSZ: "the file size limit",
                   signal.SIGKILL: "killed: out of memory, or by a kill"}


def exit_words(code: int | None) -> str:
    """How a process ended, in words; bwrap reports a death by signal N as exit code 128 + N."""
    if code is not None and code < 0:
        sig = -code
    elif code is not None and 128 < code < 128 + signal.NSIG:
        sig = code - 128
    else:
        return f"exited with code {code}"
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = f"signal {sig}"
    meaning = _SIGNAL_MEANING.get(sig)
    return f"was killed by {name}{' (' + meaning + ')' if meaning else ''}, exit code {code}"


async def _pump_replies(proc: asyncio.subprocess.Process, episode: _Episode) -> None:
    tasks: set[asyncio.Task] = set()

    def reply(obj: dict[str, Any]) -> None:
        if proc.stdin and not proc.stdin.is_closing():
            proc.stdin.write((json.dumps(obj) + "\n").encode())

    try:
        while not episode.ended.is_set():
            try:
                line = await proc.stdout.readline()
            except ValueError:  # one line over the pipe limit: the program, not the parent, must pay for it
                episode.end(f"crash: the harness process wrote a protocol message over {PIPE_LIMIT // 2**20} MiB "
                            "(an answer or request that large is refused)")
                break
            if not line:
                await proc.wait()
                episode.end(f"crash: the harness process {exit_words(proc.returncode)} before finishing")
                break
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                episode.end("crash: the harness process wrote something that is not a protocol message")
                break
            if msg.get("op") == "done":  # handled in line, so the exit that follows is not taken for a crash
                await episode.handle(msg, reply)
                break
            t = asyncio.create_task(episode.handle(msg, reply))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
    finally:  # also on the timeout's cancel: no model call of a finished episode goes on
        for t in tasks:
            t.cancel()


async def _serve_until_done_or_timeout(proc: asyncio.subprocess.Process, episode: _Episode) -> None:
    pump = asyncio.create_task(_pump_replies(proc, episode))
    watchdog = asyncio.create_task(episode.clock.run_out())
    try:
        done, _ = await asyncio.wait({pump, watchdog}, return_when=asyncio.FIRST_COMPLETED)
    finally:  # cancelled from outside too: neither task outlives the episode
        for t in (pump, watchdog):
            t.cancel()
        await asyncio.gather(pump, watchdog, return_exceptions=True)
    if pump in done:
        pump.result()  # a bug in serving is raised, not taken for the program's failure
    else:
        episode.end(f"timeout: the episode ran past {episode.clock.limit_s:g}s of its own time "
                    "(time waiting on the model is not counted)")


async def run_episode(harness: Harness, task: Task, services: EpisodeServices, seed: int, epoch: int = 0) -> Trajectory:
    """Run one episode in the sandbox; the returned trajectory is not scored yet."""
    ep = _Episode(harness, task, services, seed, epoch)
    started = time.monotonic()
    files = {**harness.files, "worker.py": WORKER_SOURCE.read_text(), "techniques.py": TECHNIQUES_SOURCE.read_text(),
             "tool_calls.py": TOOL_CALLS_SOURCE.read_text()}
    async with await services.sandbox.spawn(python_argv("worker.py"), files=files) as box:
        proc = box.proc
        proc.stdin.write((json.dumps(ep.setup_message()) + "\n").encode())
        await _serve_until_done_or_timeout(proc, ep)
        await box.kill()
        log = box.stderr_text()
    if ep.unavailable is not None:  # raised, so the evaluator stops without recording a false failure
        raise ep.unavailable
    ep.traj.steps = ep.budget.steps
    ep.traj.tokens = ep.budget.tokens
    ep.traj.seconds = round(time.monotonic() - started, 4)
    ep.traj.log = log[-LOG_TAIL:]
    last_words = [line.strip() for line in log[-LOG_TAIL:].splitlines() if line.strip()]
    if ep.traj.error and ep.traj.error.startswith("crash:") and last_words:  # e.g. the MemoryError that ended it
        ep.traj.error += f"; its last output line: {last_words[-1][:200]}"
    return ep.traj


def python_sandbox_limits(base: SandboxLimits) -> SandboxLimits:
    """The python skill gets a tighter box than the harness itself."""
    return SandboxLimits(memory_mb=min(base.memory_mb, 512), cpu_s=min(base.cpu_s, 10), max_procs=16,
                         file_mb=min(base.file_mb, 8), output_kb=min(base.output_kb, 64), wall_s=10.0)

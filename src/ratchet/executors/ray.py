"""The Ray executor: each episode, and each research trial, is one Ray task on a Ray cluster.

Driver side (`RayExecutor`): connects to the cluster at `[executor] address`, or starts a local one with
`num_cpus`, submits tasks and awaits their results; the evaluator and the research arena score and record
them here, in the driver, as with the local executor. Worker side (the `_*_task` functions): the same
episode runner (`harness.runtime.run_episode`, so the harness still runs in the bubblewrap sandbox with
the project's limits) and the same trial runner, on services the worker builds once per process from the
project's model, sandbox and eval settings - a model of its own for the local and scripted backends, or
the OpenAI-compatible endpoint of its node (`[executor] base_url`, "{node_ip}" filled in).

A worker that dies mid-task (killed, out of memory, its node lost) is rerun by Ray up to `max_retries`
times; after that the episode is recorded as a failed one (no answer, score 0) and the trial as a crashed
one, by the driver, once. Exceptions raised by the work itself are not retried: they reach the driver as
they would locally (a model endpoint that is down stops the evaluation, resumable).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import ray
from ray import exceptions as rex

from ratchet.config import ConfigError, ExecutorSection, ModelSection, ProjectConfig
from ratchet.harness.loader import Harness
from ratchet.harness.runtime import EpisodeServices, offers_demos, run_episode
from ratchet.models.vllm import free_port
from ratchet.process_guard import Guarded
from ratchet.types import Task, Trajectory

T = TypeVar("T")

# the worker, its node or the task's result gone: what max_retries covers, and what counts as a lost task after
HEAD_START_S = 120.0  # a cold `ray start` on 2 busy cores takes several seconds

_LOST = tuple(getattr(rex, n) for n in ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError", "ObjectLostError",
                                       "TaskCancelledError") if hasattr(rex, n))


def worker_model(cfg: ProjectConfig, node_ip: str | None = None) -> ModelSection:
    """The [model] a worker uses: the project's, pointed at its node's endpoint when `[executor] base_url` is set."""
    model, url = cfg.model, cfg.executor.base_url
    if url is not None:
        if model.backend not in ("openai", "vllm"):
            raise ConfigError(f'[executor] base_url is the endpoint of an OpenAI-compatible server; [model] backend = '
                              f'"{model.backend}" calls none (use backend = "openai" or "vllm", or drop base_url)')
        return model.model_copy(update={"base_url": url.replace("{node_ip}", node_ip or "127.0.0.1")})
    if model.backend == "vllm" and not model.base_url:
        raise ConfigError('[executor] kind = "ray" with [model] backend = "vllm": give the servers to call, '
                          '[executor] base_url = "http://{node_ip}:8000/v1" (one per node) or [model] base_url; '
                          "each Ray worker would otherwise start a vLLM server of its own")
    return model


class RayExecutor:
    kind = "ray"

    def __init__(self, section: ExecutorSection, worker_cfg: ProjectConfig | None):
        if worker_cfg is not None:
            worker_model(worker_cfg)  # a bad combination is an error now, not in every worker
        self.section, self.worker_cfg = section, worker_cfg
        self._started = False  # a local cluster this executor started (and so shuts down)
        self._head: LocalHead | None = None
        self._cfg_ref: Any = None

    def _connect(self) -> None:
        if ray.is_initialized():  # already connected (a caller's cluster): use it, leave it running
            return
        opts: dict[str, Any] = {"log_to_driver": False, "logging_level": "ERROR"}
        if self.section.address:
            ray.init(address=self.section.address, **opts)
            return
        self._head = start_local_head(self.section.num_cpus or os.cpu_count() or 1)
        deadline = time.monotonic() + HEAD_START_S
        while True:  # the head takes a few seconds to listen
            try:
                ray.init(address=self._head.address, **opts)
                break
            except (ConnectionError, RuntimeError) as e:
                if not self._head.guarded.alive() or time.monotonic() > deadline:
                    self._head.guarded.stop()
                    raise RuntimeError(f"the local Ray head did not start: {e}; its log: {self._head.guarded.log_path}") from e
                time.sleep(1.0)
        self._started = True

    def _options(self, num_cpus: float, num_gpus: float = 0.0) -> dict[str, Any]:
        return {"num_cpus": num_cpus, "num_gpus": num_gpus, "max_retries": self.section.max_retries,
                "retry_exceptions": False}

    async def run_episode(self, harness: Harness, task: Task, services: EpisodeServices, seed: int,
                          epoch: int) -> Trajectory:
        if self.worker_cfg is None:
            raise RuntimeError("this RayExecutor was built without a project config, so its workers cannot run episodes")
        self._connect()
        if self._cfg_ref is None:
            self._cfg_ref = ray.put(self.worker_cfg)
        demos = services.demos if offers_demos(harness, services) else []
        bare = Task(task.id, task.input, dict(task.metadata))  # what the harness sees; never more
        ref = _episode_task.options(**self._options(self.section.episode_num_cpus)).remote(
            self._cfg_ref, harness, bare, demos, seed, epoch)
        try:
            return await _result(ref)
        except _LOST as e:
            return Trajectory(task_id=task.id, epoch=epoch, seed=seed, error=f"crash: {self._lost_words(e)}")

    async def run_trial(self, run: Callable[..., Awaitable[T]], *args: Any, lost: Callable[[str], T]) -> T:
        self._connect()
        ref = _call_task.options(**self._options(self.section.trial_num_cpus, self.section.trial_num_gpus)).remote(
            run, args)
        try:
            return await _result(ref)
        except _LOST as e:
            return lost(self._lost_words(e))

    def _lost_words(self, e: BaseException) -> str:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        return f"the Ray worker running it was lost after {self.section.max_retries} retries ({type(e).__name__}: {first})"

    def close(self) -> None:
        if self._started and ray.is_initialized():
            ray.shutdown()
        if self._head is not None:
            self._head.guarded.stop()
            self._head = None
        self._started, self._cfg_ref = False, None


@dataclasses.dataclass
class LocalHead:
    address: str
    guarded: Guarded


def start_local_head(num_cpus: int) -> LocalHead:
    """`ray start --head --block` under the process guard, so the local cluster's processes (GCS, raylet,
    workers, and the agents that `ray.init()`'s own cluster left running for a minute after a SIGKILL of
    ratchet) go when ratchet goes, however it goes."""
    ray_bin = shutil.which("ray", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if ray_bin is None:
        raise ConfigError('[executor] kind = "ray" needs the `ray` command next to this Python; '
                          'install the extra: pip install -c constraints.txt -e ".[ray]"')
    port = free_port()
    log_dir = Path(tempfile.gettempdir()) / "ratchet-ray"
    log_dir.mkdir(exist_ok=True)
    # a temp dir of its own: `ray start` records its address in the temp dir's `ray_current_cluster`, and
    # a later plain `ray.init()` on this machine (a user's, a test's) would try to join that dead cluster
    temp_dir = log_dir / f"head-{port}"
    command = [ray_bin, "start", "--head", "--block", f"--port={port}", f"--num-cpus={num_cpus}",
               f"--temp-dir={temp_dir}", "--include-dashboard=false", "--disable-usage-stats"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    return LocalHead(f"127.0.0.1:{port}", Guarded(command, str(log_dir / f"head-{port}.log"), env, grace_s=10.0))


async def _result(ref: Any) -> Any:
    """The task's return value; an exception raised by the work itself is raised here as itself."""
    try:
        return await ref
    except rex.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, Exception) and not isinstance(cause, rex.RayError):
            raise cause from None
        raise


# -- the worker side ------------------------------------------------------------------------------------

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_services: dict[str, EpisodeServices] = {}


def _in_worker_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on this worker process's one event loop (a thread of its own), so that the model built for the
    first task - its client, its batcher - serves every later task of the process."""
    global _loop
    with _lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="ratchet-worker-loop", daemon=True).start()
    return asyncio.run_coroutine_threadsafe(coro, _loop).result()


async def _build_services(cfg: ProjectConfig) -> EpisodeServices:
    from ratchet.models import build_model
    from ratchet.project import make_services

    section = worker_model(cfg, ray.util.get_node_ip_address())
    cache = cfg.state_dir / "cache.sqlite" if cfg.state_dir.is_dir() else None  # the project's, where it is visible
    return make_services(cfg, build_model(section, cfg.root, cache))


def _worker_services(cfg: ProjectConfig) -> EpisodeServices:
    key = cfg.model_dump_json()
    if key not in _services:
        _services[key] = _in_worker_loop(_build_services(cfg))
    return _services[key]


@ray.remote
def _episode_task(cfg: ProjectConfig, harness: Harness, task: Task, demos: list, seed: int, epoch: int) -> Trajectory:
    services = _worker_services(cfg)
    if demos:
        services = dataclasses.replace(services, demos=demos)
    return _in_worker_loop(run_episode(harness, task, services, seed, epoch))


@ray.remote
def _call_task(run: Callable[..., Awaitable[T]], args: tuple) -> T:
    return _in_worker_loop(run(*args))

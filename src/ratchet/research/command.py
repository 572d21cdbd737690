"""The command evaluator: one trial = the configured command, run once with one seed, in a private
copy of a candidate's checkout, inside the sandbox, under a wall-clock budget.

A trial that crashes, runs past its budget, prints no metric or prints a NaN/inf metric is a
failure with a status, a one-line reason and the tail of its output; it never turns into a score.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from ratchet.research.config import ResearchSection
from ratchet.research.metric import read_metric
from ratchet.sandbox import Sandbox, SandboxLimits, SandboxResult, gpu_device_nodes

FAILURES = ("crash", "timeout", "no_metric", "nan_metric")
CPU_TAG = "RATCHET_TRIAL_CPU_S"
# Runs the command as a child and reports the CPU it used (all its processes, waited for): rusage of a
# sandboxed program does not reach us through bwrap. Exit status and signal death are passed through.
_METER = (
    "import os, resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[1:])\n"
    "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    f"print('\\n{CPU_TAG}', round(u.ru_utime + u.ru_stime, 3), file=sys.stderr, flush=True)\n"
    "if code < 0:\n    os.kill(os.getpid(), -code)\n"
    "sys.exit(code)\n"
)
_PYTHONS = {"python", "python3", f"python{sys.version_info.major}.{sys.version_info.minor}"}


@dataclass
class TrialResult:
    unit: str  # the seed slot that pairs parent and candidate, e.g. "seed-3"
    epoch: int
    seed: int  # the seed the command was given
    split: str
    status: str  # ok | crash | timeout | no_metric | nan_metric
    value: float | None  # the metric in its own units; None unless status is ok
    reason: str  # one line; "" when ok
    log_tail: str
    seconds: float
    returncode: int | None
    cpu_s: float | None = None  # CPU seconds of the command and its children; None when it was killed

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict:
        return asdict(self)


def trial_argv(spec: ResearchSection, seed: int, split: str) -> list[str]:
    """The command with {seed}, {split} and {budget_s} filled in; `python` means this interpreter
    (the sandbox binds only its prefix, so another python on PATH may not exist inside)."""
    values = {"seed": str(seed), "split": split, "budget_s": f"{spec.budget_s:g}"}
    argv = [_fill(a, values) for a in spec.argv]
    if argv[0] in _PYTHONS:
        argv[0] = sys.executable
    return argv


def _fill(arg: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        arg = arg.replace("{" + key + "}", value)
    return arg


def metered(argv: list[str]) -> list[str]:
    return [sys.executable, "-c", _METER, *argv]


def split_cpu(stderr: str) -> tuple[str, float | None]:
    """stderr without the meter's line, and the CPU seconds it reported (None when it never printed)."""
    head, sep, tail = stderr.rpartition(CPU_TAG)
    if not sep:
        return stderr, None
    try:
        return head.rstrip("\n"), float(tail.strip().split()[0])
    except (ValueError, IndexError):
        return stderr, None


def trial_env(spec: ResearchSection, seed: int, split: str, unit: str) -> dict[str, str]:
    """What the command is told: its seed, split and budget (the rest of the environment is built from nothing),
    and the GPUs it was given (a Ray worker's CUDA_VISIBLE_DEVICES, set by Ray for a trial's num_gpus)."""
    gpus = {"CUDA_VISIBLE_DEVICES": os.environ["CUDA_VISIBLE_DEVICES"]} if "CUDA_VISIBLE_DEVICES" in os.environ else {}
    return {**spec.env, **gpus, "RATCHET_SEED": str(seed), "RATCHET_SPLIT": split, "RATCHET_UNIT": unit,
            "RATCHET_BUDGET_S": f"{spec.budget_s:g}", "PYTHONUNBUFFERED": "1"}


def trial_limits(spec: ResearchSection, cores: int | None = None) -> SandboxLimits:
    """The trial's box: [research]'s limits, and the device nodes of the GPUs it was given (Ray sets
    CUDA_VISIBLE_DEVICES for a trial's num_gpus), which also lifts the address-space limit (sandbox/command.py)."""
    cpu_s = spec.cpu_s or math.ceil(spec.budget_s * (cores or os.cpu_count() or 1)) + 30
    return SandboxLimits(memory_mb=spec.memory_mb, cpu_s=cpu_s, max_procs=spec.max_procs, file_mb=spec.file_mb,
                         output_kb=spec.output_kb, wall_s=spec.budget_s,
                         gpu_devices=gpu_device_nodes(os.environ.get("CUDA_VISIBLE_DEVICES")))


def tail(text: str, limit: int) -> str:
    return text if len(text) <= limit else "[...]\n" + text[-limit:]


def log_tail(res: SandboxResult, limit: int) -> str:
    """The end of stdout and of stderr, each labelled, within `limit` characters; a failed run's
    stderr (its traceback) gets the larger share."""
    parts = []
    out, err = res.stdout.strip(), res.stderr.strip()
    err_share = (limit * 3 // 4 if res.returncode != 0 else limit // 2) if out else limit
    out_share = limit - err_share if err else limit
    if out:
        parts.append("--- stdout (end) ---\n" + tail(out, out_share))
    if err:
        parts.append("--- stderr (end) ---\n" + tail(err, err_share))
    return "\n".join(parts) or "(no output)"


def judge(res: SandboxResult, spec: ResearchSection) -> tuple[str, float | None, str]:
    """(status, metric value, reason) for one finished run: a decision, no I/O."""
    if res.timed_out:
        return "timeout", None, f"ran past its budget of {spec.budget_s:g}s and was killed"
    if res.returncode != 0:
        why = f"; {res.reason}" if res.reason else ""
        return "crash", None, f"exited with status {res.returncode}{why}"
    reading = read_metric(res.stdout, spec.metric, spec.metric_regex)
    if not reading.found:
        how = f"metric_regex {spec.metric_regex!r}" if spec.metric_regex else \
            f"a JSON line with key {spec.metric!r} or a '{spec.metric}: <number>' line"
        truncated = "truncated" in (res.reason or "")
        hint = " (its output was truncated: print less, or raise [research] output_kb)" if truncated else ""
        return "no_metric", None, f"exited 0 but printed no metric: looked for {how} on stdout{hint}"
    if not reading.finite:
        return "nan_metric", None, f"printed {spec.metric} = {reading.value} (not a finite number)"
    return "ok", reading.value, ""


def ratchet_source() -> Path:
    """The directory holding the ratchet package, bound read-only so that a command may use ratchet itself
    (the two-tier example runs the flywheel); an editable install points outside the interpreter's prefix."""
    import ratchet

    return Path(ratchet.__file__).resolve().parent.parent


class CommandEvaluator:
    """Runs trials of one research command; each trial in its own sandbox and private copy of the checkout."""

    def __init__(self, spec: ResearchSection, sandbox: Sandbox, ro_binds: list[Path] | None = None):
        self.spec, self.sandbox = spec, sandbox
        self.ro_binds = list(ro_binds or [])

    @classmethod
    def create(cls, spec: ResearchSection, backend: str = "auto", ro_binds: list[Path] | None = None) -> CommandEvaluator:
        sandbox = Sandbox(trial_limits(spec), backend=backend, hide=None if spec.hide_gold_packages else ())
        return cls(spec, sandbox, [*(ro_binds or []), ratchet_source()])

    async def run_trial(self, checkout: Path, unit: str, epoch: int, seed: int, split: str) -> TrialResult:
        res = await self.sandbox.run(metered(trial_argv(self.spec, seed, split)), ro_binds=self.ro_binds,
                                     wall_s=self.spec.budget_s, env=trial_env(self.spec, seed, split, unit),
                                     workdir_from=checkout)
        res.stderr, cpu_s = split_cpu(res.stderr)
        status, value, reason = judge(res, self.spec)
        limit = self.spec.log_tail_chars if status != "ok" else min(500, self.spec.log_tail_chars)
        return TrialResult(unit=unit, epoch=epoch, seed=seed, split=split, status=status, value=value, reason=reason,
                           log_tail=log_tail(res, limit), seconds=round(res.seconds, 3), returncode=res.returncode,
                           cpu_s=cpu_s)

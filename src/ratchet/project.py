"""Open a project: turn ratchet.toml into a suite, a model, a sandbox, a ledger and an evaluator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ratchet.config import ConfigError, ModelSection, ProjectConfig, load_project, load_record_config
from ratchet.evaluate import Evaluator
from ratchet.executors import build_executor
from ratchet.harness.budget import EpisodeLimits
from ratchet.harness.runtime import EpisodeServices, python_sandbox_limits
from ratchet.ledger import Ledger
from ratchet.models.base import ChatModel
from ratchet.sandbox import Sandbox, SandboxLimits
from ratchet.suites import build_suite, tasks_for_split
from ratchet.suites.base import Suite
from ratchet.types import Task


@dataclass
class Project:
    cfg: ProjectConfig
    suite: Suite
    model: ChatModel
    ledger: Ledger
    services: EpisodeServices
    evaluator: Evaluator

    @property
    def root(self) -> Path:
        return self.cfg.root

    def tasks(self, split: str, limit: int | None = None) -> list[Task]:
        tasks = tasks_for_split(self.suite, split, self.cfg.suite.splits.model_dump(), self.cfg.suite.split_salt)
        return tasks[:limit] if limit else tasks

    async def aclose(self) -> None:
        self.evaluator.executor.close()  # a local Ray cluster it started ends here
        await self.model.aclose()
        self.ledger.close()


def make_services(cfg: ProjectConfig, model: ChatModel, recall=None) -> EpisodeServices:
    limits = SandboxLimits.from_section(cfg.sandbox, wall_s=cfg.eval.timeout_s + 5)
    return EpisodeServices(
        model=model,
        sandbox=Sandbox(limits, backend=cfg.sandbox.backend),
        limits=EpisodeLimits(cfg.eval.max_steps, cfg.eval.max_tokens, cfg.eval.timeout_s, cfg.eval.loop_repeats,
                             cfg.eval.loop_window, cfg.eval.loop_similarity),
        python_sandbox=Sandbox(python_sandbox_limits(limits), backend=cfg.sandbox.backend),
        recall=recall,
    )


def open_project(path: str | Path, model: ModelSection | None = None, ledger_url: str | None = None) -> Project:
    from ratchet.models import build_model  # here, so that opening a project's ledger does not load torch

    cfg = load_project(path)
    if model is not None:
        cfg = cfg.model_copy(update={"model": model})
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(ledger_url or cfg.ledger_url)
    try:
        suite = build_suite(cfg.suite, cfg.root)
    except ValueError as e:  # a suite's data error names the file and line: the user's to fix, not a crash
        raise ConfigError(str(e)) from None
    chat = build_model(cfg.model, cfg.root, cfg.state_dir / "cache.sqlite")
    services = make_services(cfg, chat)
    return Project(cfg, suite, chat, ledger, services, make_evaluator(cfg, suite, services, ledger))


def make_evaluator(cfg: ProjectConfig, suite: Suite, services: EpisodeServices, ledger: Ledger) -> Evaluator:
    """The project's evaluator; with [eval] inspect_logs, one that also writes an Inspect log per evaluation."""
    executor = build_executor(cfg.executor, cfg)
    if not cfg.eval.inspect_logs:
        return Evaluator(suite, services, ledger, cfg.eval.concurrency, executor=executor)
    from ratchet.export.inspect_log import NEEDS_INSPECT, InspectLogEvaluator, inspect_available

    if not inspect_available():
        raise ConfigError(f"[eval] inspect_logs = {cfg.eval.inspect_logs!r}: {NEEDS_INSPECT}")
    return InspectLogEvaluator(suite, services, ledger, cfg.eval.concurrency, out_dir=cfg.root / cfg.eval.inspect_logs,
                               base_seed=cfg.eval.seed, executor=executor)


@dataclass
class ProjectLedger:
    """A project's config and ledger without a model or suite: for commands that only read the record."""

    cfg: ProjectConfig
    ledger: Ledger

    async def aclose(self) -> None:
        self.ledger.close()


def open_project_ledger(path: str | Path, ledger_url: str | None = None) -> ProjectLedger:
    cfg = load_record_config(path)
    return ProjectLedger(cfg, Ledger(ledger_url or cfg.ledger_url))

"""The flywheel loop: per generation, generate -> verify -> filter -> train -> evaluate -> promote.

It is the same loop as `ratchet evolve`, with training as the proposal: the evaluator, the comparison
step and its decision settings (the project's `[loop]`: dev, then holdout through Thresholdout), the
ledger, the stop controls and the lessons are shared. `Flywheel.generation` runs one method per stage.
Every stage writes to the ledger before the next begins, so `--resume` continues a stopped run: the
sampling evaluation reuses its finished rollouts, examples are written once by stable id, a trained
model already in the registry is not trained again, and a decided generation is not decided twice.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ratchet.config import ConfigError
from ratchet.evaluate import EvalInterrupted, EvalResult, Evaluator
from ratchet.flywheel import registry
from ratchet.flywheel.agreement import judge_checker_agreement
from ratchet.flywheel.card import card_markdown
from ratchet.flywheel.config import DECISION_KEYS, FlywheelConfig, parse_flywheel
from ratchet.flywheel.contamination import index_for_suite
from ratchet.flywheel.datasets import (
    Example,
    Provenance,
    TrainingData,
    dataset_hash,
    export,
    no_data_reason,
    training_mix,
)
from ratchet.flywheel.filter import (
    filter_examples,
    grpo_prompts,
    hit_summary,
    ledger_rows,
    pair_candidates,
    process_drops,
    revision_pairs,
    rollout_counts,
    sft_candidates,
)
from ratchet.flywheel.generate import failed_rollouts, generation_seed, rationalize, sampling_harness
from ratchet.flywheel.generate import generate as generate_rollouts
from ratchet.flywheel.judging import compare_pairs, verify_all
from ratchet.flywheel.model_pool import ModelPool
from ratchet.flywheel.promote import Comparison, compare, final_report, lesson_for
from ratchet.flywheel.rlaif import Judged, has_checker, rlaif_pairs
from ratchet.flywheel.train import TRAIN_CONFIG_FILE, TrainInterrupted, TrainResult, train_grpo, train_model
from ratchet.flywheel.verify import Judge, verdict_for, verifier_identity
from ratchet.harness.loader import Harness, load_harness
from ratchet.ledger.flywheel_store import FlywheelStore
from ratchet.loop.control import StopControl
from ratchet.loop.holdout import Thresholdout
from ratchet.loop.memory import lesson_text
from ratchet.models.base import ChatModel
from ratchet.project import Project, make_services
from ratchet.suites.base import split_of
from ratchet.tracking import RunInfo, configure, run_tracking
from ratchet.types import Task, Trajectory

Progress = Callable[[str], AbstractContextManager[Callable[[int, int], None]]]


@dataclass
class FlywheelSummary:
    run_id: str
    status: str  # finished | stopped
    reason: str
    current_model: str
    base_model: str
    generations: list[dict[str, Any]] = field(default_factory=list)
    final_holdout: dict[str, Any] | None = None
    wall_s: float = 0.0
    card_path: Path | None = None
    by_budget: bool = False  # stopped because a [guard] budget ran out (not by a person)


def git_commit(path: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _no_progress(_desc: str) -> AbstractContextManager[Callable[[int, int], None]]:
    return nullcontext(lambda done, total: None)


class Flywheel:
    def __init__(self, project: Project, fw: FlywheelConfig | None = None, *, on_event: Callable[[str], None] | None = None,
                 progress: Progress | None = None, handle_sigint: bool = False,
                 train_fn: Callable[..., TrainResult] = train_model,
                 model_factory: Callable[[str], ChatModel] | None = None):
        """`train_fn` and `model_factory` replace training and model loading (tests of the loop mechanics)."""
        if model_factory is None and project.cfg.model.backend not in ("local", "vllm"):
            raise ConfigError("the flywheel trains the model's weights, so [model] backend must be \"local\" or "
                              f"\"vllm\" (a server ratchet starts for each checkpoint); it is {project.cfg.model.backend!r}")
        self.p, self.cfg = project, project.cfg
        self.fw = fw or self.cfg.flywheel
        self.store = FlywheelStore(project.ledger)
        self.say = on_event or (lambda msg: None)
        self.progress = progress or _no_progress
        self.handle_sigint = handle_sigint
        self.tracking = configure(self.cfg.tracking, self.cfg.root, self.say)  # checked before a run is opened
        self.train_fn = train_fn
        self.harness: Harness = load_harness(self.cfg.harness_dir)
        self.gen_harness = sampling_harness(self.harness, self.fw.temperature)
        self.harness_commit = git_commit(self.cfg.harness_dir)
        fractions, salt = self.cfg.suite.splits.model_dump(), self.cfg.suite.split_salt
        self.split = {t.id: split_of(t.id, fractions, salt) for t in project.suite.tasks()}
        self.tasks = {s: project.tasks(s) for s in ("train", "dev", "holdout", "test")}
        if self.fw.task_limit:
            self.tasks["train"] = self.tasks["train"][: self.fw.task_limit]
        if self.fw.eval_limit:
            for s in ("dev", "holdout"):
                self.tasks[s] = self.tasks[s][: self.fw.eval_limit]
        for s in ("train", "dev", "holdout"):
            if not self.tasks[s]:
                raise ConfigError(f"the {s} split is empty; raise [suite] size or the {s} fraction in [suite.splits]")
        self.index = index_for_suite(project.suite, fractions, salt, n=self.fw.ngram,
                                     threshold=self.fw.contamination_threshold, boilerplate_df=self.fw.boilerplate_df)
        self._train_by_id = {t.id: t for t in self.tasks["train"]}
        self.unchecked = frozenset(t.id for t in self.tasks["train"] if not has_checker(project.suite, t))
        if self.unchecked and self.fw.judge is None:
            raise ConfigError(f"{len(self.unchecked)} train tasks have no checker (e.g. {min(self.unchecked)!r}), so "
                              "their rollouts need an AI judge: add a [flywheel.judge] table (docs/flywheel.md)")
        self.models = ModelPool(self.cfg, project.model, model_factory)

    def evaluator(self, name: str) -> Evaluator:
        return Evaluator(self.p.suite, make_services(self.cfg, self.models.get(name)), self.p.ledger,
                         self.cfg.eval.concurrency)

    # -- the run -----------------------------------------------------------------------------------
    def _open_run(self, resume: bool, generations: int) -> tuple[str, int]:
        project = self.cfg.project.name
        if resume:
            run = self.p.ledger.latest_run("flywheel", project)
            if run is None:
                raise ConfigError(f"--resume: no earlier flywheel run of project {project!r} in the ledger")
            stored = run["config"].get("flywheel")
            if stored:  # a run recorded before the decision settings moved to [loop] still names them
                self.fw = parse_flywheel({k: v for k, v in stored.items() if k not in DECISION_KEYS})
            self.base = run["config"].get("base_model", self.cfg.model.name)
            self.p.ledger.update_run(run["id"], status="running")
            return run["id"], max(generations, int(run["config"].get("generations", 0)))
        self.base = self.cfg.model.name
        config = {"flywheel": self.fw.to_json(), "loop": self.cfg.loop.model_dump(), "generations": generations,
                  "base_model": self.base, "harness": self.harness.fingerprint, "harness_commit": self.harness_commit}
        return self.p.ledger.create_run("flywheel", project, config), generations

    async def run(self, generations: int | None = None, resume: bool = False) -> FlywheelSummary:
        started = time.monotonic()
        run_id, total = self._open_run(resume, generations or self.fw.generations)
        self.run_id = run_id
        ledger = self.p.ledger
        run = ledger.run(run_id) or {}
        tracker = run_tracking(self.tracking, ledger, RunInfo(run_id, "flywheel", self.cfg.project.name, run.get("config") or {}),
                               card=lambda: card_markdown(run_id, self.store.generations(run_id)))
        control = StopControl(self.cfg.guard, total, self.cfg.root / self.cfg.guard.stop_file)
        control.resume_from((run.get("summary") or {}).get("usage", {}))
        if self.handle_sigint:
            control.install_sigint()
        state = ledger.get_state(run_id, "thresholdout")
        loop = self.cfg.loop  # the decision settings, shared with evolve and research
        self.mechanism = (Thresholdout.from_json(state) if state else
                          Thresholdout(loop.holdout_budget, loop.holdout_threshold, loop.holdout_noise, seed=self.fw.eval_seed))
        current, status, reason = self.base, "finished", f"{total} generations done"
        by_budget = False
        for g in range(1, total + 1):
            done = self.store.generation(run_id, g)
            if done and done["status"] in ("promoted", "rejected", "skipped"):
                current = done["candidate_model"] if done["status"] == "promoted" else current
                tracker.generation_done(g)  # a no-op unless the tracker missed it before a stop
                continue
            budget = control.budget_reason()
            if why := budget or control.stop_reason():
                status, reason, by_budget = "stopped", why, budget is not None
                break
            try:
                current = await self.generation(g, current, control)
            except (EvalInterrupted, TrainInterrupted) as e:
                stop, budget = control.stop_reason(), control.budget_reason(rounds=False)
                status, reason, by_budget = "stopped", f"{stop or budget or 'stopped'}: {e}", stop is None and budget is not None
                break
            control.usage.rounds = g
            ledger.update_run(run_id, summary={"usage": control.usage.to_json(), "current_model": current})
            tracker.generation_done(g)
        final = await self.final_holdout(current) if status == "finished" else None
        ledger.update_run(run_id, status=status, summary={"usage": control.usage.to_json(), "current_model": current,
                                                          "reason": reason, "final_holdout": final})
        tracker.finished(status, reason)
        card = self.write_card()
        return FlywheelSummary(run_id, status, reason, current, self.base, self.store.generations(run_id), final,
                               time.monotonic() - started, card, by_budget)

    # -- one generation: the stages of docs/flywheel.md, top to bottom ----------------------------------
    async def generation(self, g: int, current: str, control: StopControl) -> str:
        """Generate -> verify -> filter (and the data mix) -> train -> evaluate -> promote; the model that is
        current afterwards. Each stage writes to the ledger before the next begins (see the module docstring)."""
        run_id = self.run_id
        self.store.open_generation(run_id, g, current)
        seconds: dict[str, float] = dict((self.store.generation(run_id, g) or {}).get("seconds") or {})
        with _timed(seconds, "generate"):
            sampled = await self.generate(g, current, control)
        with _timed(seconds, "verify"):
            rollouts, star = await self.verify(sampled.trajectories, current, g)
            judged = await self.judge_pairs(rollouts, current)
        with _timed(seconds, "filter"):
            data = self.filter(g, current, sampled.eval_id, rollouts, star, judged)
        self.store.update_generation(run_id, g, status="filtered", eval_id=sampled.eval_id, counts=data.counts,
                                     dataset_hash=data.dataset_hash, seconds=seconds)
        self.say(f"generation {g}: {data.summary()}")
        reason = no_data_reason(data, self.fw.train)
        if reason:
            self.store.update_generation(run_id, g, status="skipped", decision={"reason": reason}, seconds=seconds)
            self.say(f"generation {g}: skipped, {reason}")
            return current
        with _timed(seconds, "train"):
            name = await self.train(g, current, data, sampled.trajectories, control)
        self.store.update_generation(run_id, g, status="trained", candidate_model=name, seconds=seconds)
        with _timed(seconds, "evaluate"):
            cmp = await self.evaluate(g, current, name, control)
        return await self.promote(g, current, name, cmp, data.counts, seconds)

    async def generate(self, g: int, current: str, control: StopControl) -> EvalResult:
        """K rollouts per train task with the current model (resumable: finished rollouts are reused)."""
        fw = self.fw
        self.say(f"generation {g}: sampling {fw.samples_per_task} rollouts x {len(self.tasks['train'])} train tasks "
                 f"with {current}")
        with self.progress(f"g{g} generate") as cb:
            sampled = await generate_rollouts(self.evaluator(current), self.gen_harness, self.tasks["train"],
                                              fw.samples_per_task, generation_seed(fw.seed, g), run_id=self.run_id,
                                              progress=cb, should_stop=control.should_stop, splits=self.split)
        if (failed := failed_rollouts(sampled.trajectories)) is not None:
            self.say(f"generation {g}: {failed}")
            self.p.ledger.add_event("flywheel_failed_rollouts", {"generation": g, "message": failed}, run_id=self.run_id)
        spent = sampled.spent
        control.spend(spent.rollouts, spent.tokens, self.cfg.model.usd(spent.prompt_tokens, spent.completion_tokens))
        return sampled

    async def verify(self, trajs: list[Trajectory], current: str, g: int) -> tuple[list, list]:
        """A verdict per rollout (outcome score, the judge where it applies, process checks: judging.py);
        STaR's hinted retries (tasks with a checker only: the hint is their gold answer)."""
        fw = self.fw
        verdicts = await verify_all(trajs, fw, self._judge(current), self.p.suite, self._task, self.unchecked)
        star: list = []
        if fw.star_rationalize:
            solved = {t.task_id for t, v in verdicts if v.good} | self.unchecked
            failed, seen = [], set()
            for traj, _v in verdicts:
                if traj.task_id not in solved and traj.task_id not in seen and traj.messages:
                    seen.add(traj.task_id)
                    failed.append((self._task(traj.task_id), traj))
            temperature = fw.temperature if fw.temperature is not None else 0.7
            hinted = await rationalize(self.models.get(current), self.p.suite, failed[: fw.star_max_tasks], temperature,
                                       generation_seed(fw.seed, g), self.split.get)
            star = [(t, verdict_for(t, fw.min_score, None, 0.0, fw.drop_tool_errors, fw.drop_loops)) for t in hinted]
        return verdicts, star

    async def judge_pairs(self, rollouts: list, current: str) -> list[Judged]:
        """RLAIF's pairwise comparisons (rlaif.py): tasks without a checker, or every task with pairwise = true."""
        return await compare_pairs(rollouts, self._judge(current), self.fw.judge, self._task, self.unchecked,
                                   self.fw.max_pairs_per_task)

    def filter(self, g: int, current: str, eval_id: str, rollouts: list, star: list,
               judged: Sequence[Judged] = ()) -> TrainingData:
        """Candidates from the verified rollouts (checker pairs, RLAIF pairs, constitution revision pairs),
        filtered (every one written to the ledger, kept or dropped), then the data stage: this generation's
        training set, exported and recorded by example id."""
        fw, run_id = self.fw, self.run_id
        counts = rollout_counts(rollouts)
        counts["star_verified"] = sum(1 for _t, v in star if v.good)
        counts["filter_mode"] = fw.filter
        prov = self._provenance(g, current, eval_id)
        sft = sft_candidates(rollouts, prov(False)) + sft_candidates(star, prov(True))
        ai_pairs, counts["rlaif"] = rlaif_pairs(judged, prov(False))
        revisions, bad_revisions = revision_pairs(rollouts, prov(False), fw.judge.min_score if fw.judge else 0.0)
        pairs = pair_candidates(rollouts, prov(False), fw.max_pairs_per_task, self.unchecked) + ai_pairs + revisions
        opts = dict(min_chars=fw.min_chars, max_chars=fw.max_chars, near_dup_threshold=fw.near_dup_threshold,
                    per_task_cap=fw.per_task_cap, prefer_short=fw.prefer_short)
        f_sft = filter_examples(sft, self.index, **opts, dropped_before=process_drops(rollouts, prov(False)))
        f_pairs = filter_examples(pairs, self.index, **opts, dropped_before=bad_revisions)
        self.store.add_examples(run_id, g, ledger_rows(f_sft) + ledger_rows(f_pairs))
        counts.update(filter_sft=f_sft.counts, filter_pairs=f_pairs.counts,
                      contamination_hits=hit_summary(f_sft) + hit_summary(f_pairs))
        if fw.judge is not None:
            self._agreement(g, rollouts, counts)
        train_sft, train_pairs, counts["train_set"] = self.training_set(g)
        examples = [*train_sft, *train_pairs]
        export(examples, self.cfg.state_dir / "flywheel" / run_id / f"g{g}")
        self.p.ledger.set_state(run_id, f"trainset:g{g}", [e.id for e in examples])
        return TrainingData(train_sft, train_pairs, dataset_hash(examples), counts, f_sft.counts, f_pairs.counts)

    async def train(self, g: int, current: str, data: TrainingData, trajs: list[Trajectory], control: StopControl) -> str:
        """Train generation g's candidate from the current model and register it; a model already in the
        registry (trained before a stop) is not trained again. Returns the candidate's name."""
        fw, name = self.fw, self.model_name(g)
        if registry.registry_model_dir(self.cfg.root, name) is None:
            self.say(f"generation {g}: training {name} ({fw.train.method}, "
                     f"{'full fine-tune' if fw.train.full_finetune else f'LoRA r={fw.train.lora_r}'})")
            result = await self._train(current, name, data.sft, data.pairs, trajs, control)
            metrics = {"train": result.metrics, "train_seconds": round(result.seconds, 1)}
        else:  # trained before a stop: keep its recorded metrics
            recorded = _read_json(registry.model_dir(self.cfg.root, name) / TRAIN_CONFIG_FILE)
            metrics = {"train": recorded.get("metrics", {}), "train_seconds": recorded.get("seconds")}
        registry.register(self.store, self.cfg.root, name=name, project=self.cfg.project.name, parent=current,
                          run_id=self.run_id, generation=g, dataset_hash=data.dataset_hash,
                          train_config=fw.to_json()["train"], metrics=metrics)
        return name

    async def _train(self, current: str, name: str, sft: list[Example], pairs: list[Example],
                     trajs: list[Trajectory], control: StopControl) -> TrainResult:
        out, base = registry.model_dir(self.cfg.root, name), self.models.weights_dir(current)
        if not self.fw.train.grpo:
            return await asyncio.to_thread(self.train_fn, base, sft, pairs, self.fw.train, out, self.say,
                                           control.should_stop)
        suite = self.p.suite

        async def reward(task_id: str, text: str) -> float:  # the suite's verifier is the reward
            return (await suite.score(self._task(task_id), text)).value

        prompts = grpo_prompts(trajs, self.index)
        self.say(f"GRPO on {len(prompts)} train prompts (contaminated prompts left out)")
        return await asyncio.to_thread(train_grpo, base, prompts, reward, self.fw.train, out,
                                       should_stop=control.should_stop)

    async def evaluate(self, g: int, current: str, name: str, control: StopControl) -> Comparison:
        """The candidate vs the current model: paired on dev, then holdout through Thresholdout ([loop]'s rule)."""
        self.say(f"generation {g}: evaluating {name} against {current} on dev (then holdout if dev accepts)")
        cmp = await compare(self.evaluator(current), self.evaluator(name), self.harness, self.tasks["dev"],
                            self.tasks["holdout"], epochs=self.fw.eval_epochs, seed=self.fw.eval_seed, loop=self.cfg.loop,
                            mechanism=self.mechanism, run_id=self.run_id,
                            progress=lambda key: self.progress(f"g{g} {key}"), should_stop=control.should_stop,
                            price=self.cfg.model.usd)
        control.spend(rollouts=cmp.rollouts, tokens=cmp.spent_tokens, usd=cmp.usd)
        self.p.ledger.set_state(self.run_id, "thresholdout", self.mechanism.to_json())
        return cmp

    async def promote(self, g: int, current: str, name: str, cmp: Comparison, counts: dict[str, Any],
                      seconds: dict[str, float]) -> str:
        """Record the decision (registry, generation, lesson) and return the model that is current now."""
        status = "promoted" if cmp.promoted else "rejected"
        registry.set_status(self.store, self.cfg.root, name, status,
                            {"decision": cmp.to_json(), "dev_mean": cmp.means.get("dev_candidate"),
                             "holdout_mean": cmp.means.get("holdout_candidate")})
        self.store.update_generation(self.run_id, g, status=status, decision=cmp.to_json(), seconds=seconds)
        self._lesson(g, name, cmp, counts)
        self.say(f"generation {g}: {status} {name}: {cmp.reason}")
        kept, dropped = (name, current) if cmp.promoted else (current, name)
        await self.models.release(dropped)
        return kept

    def _agreement(self, g: int, rollouts: list, counts: dict[str, Any]) -> None:
        """Judge-vs-checker agreement into the counts (the data card); a lenient judge is also a warning event."""
        j = self.fw.judge
        agreement = judge_checker_agreement(rollouts, self.unchecked, self.fw.min_score, j.min_score, j.lenient_rate,
                                            j.lenient_min)
        counts["judge_agreement"] = agreement.to_json()
        if agreement.lenient:
            self.p.ledger.add_event("flywheel_lenient_judge", {"generation": g, **agreement.to_json()}, run_id=self.run_id)
            self.say(f"generation {g}: warning: lenient judge: {agreement.summary()}")

    def _judge(self, current: str) -> Judge | None:
        j = self.fw.judge
        if j is None:
            return None
        text = j.text or (self.cfg.root / j.path).read_text()
        model = self.models.judge(j.model) if isinstance(j.model, dict) else self.models.get(j.model or current)
        return Judge(model, j, text)

    def _task(self, task_id: str) -> Task:
        return self._train_by_id[task_id]

    def _provenance(self, g: int, current: str, eval_id: str) -> Callable[[bool], Callable]:
        verifier = verifier_identity(self.p.suite.name, self.p.evaluator.suite_fingerprint,
                                     self._judge(current) if self.fw.judge else None)

        def for_source(star: bool) -> Callable[[Trajectory, int, int], Provenance]:
            def prov(traj: Trajectory, call_index: int, seed: int) -> Provenance:
                return Provenance(run_id=self.run_id, generation=g, task_id=traj.task_id,
                                  split=self.split[traj.task_id], model=current, harness=self.gen_harness.fingerprint,
                                  harness_commit=self.harness_commit, verifier=verifier, score=traj.score, seed=seed,
                                  eval_id=eval_id if not star else f"{eval_id}:star", epoch=traj.epoch,
                                  call_index=call_index, star=star,
                                  label="ai_grade" if traj.task_id in self.unchecked else "outcome")
            return prov
        return for_source

    def training_set(self, g: int) -> tuple[list[Example], list[Example], dict[str, int]]:
        """Fresh kept examples of generation g plus earlier generations' kept data at the fresh ratio."""
        rows = self.store.examples(self.run_id, status="kept", max_generation=g)
        kept = [(r["generation"], Example.from_json(r["data"]["example"])) for r in rows]
        return training_mix(kept, g, self.fw.fresh_ratio, self.fw.seed, self.fw.train.method)

    def model_name(self, g: int) -> str:
        project = re.sub(r"[^A-Za-z0-9._-]", "-", self.cfg.project.name).strip(".-") or "model"
        return f"{project}-g{g}-{self.run_id.rsplit('-', 1)[-1]}"

    def _lesson(self, g: int, name: str, cmp: Comparison, counts: dict[str, Any]) -> None:
        lesson = lesson_for(self.run_id, g, name, self.fw.train.method, cmp, counts)
        self.p.ledger.add_lesson(self.run_id, g, name, lesson_text(lesson), lesson.to_json())

    async def final_holdout(self, current: str) -> dict[str, Any] | None:
        """Report (never used to decide): base vs final model on holdout, paired, same seeds and epochs."""
        if current == self.base:
            return None
        fw = self.fw
        base = await self.evaluator(self.base).evaluate(self.harness, self.tasks["holdout"], "holdout", fw.eval_epochs,
                                                        fw.eval_seed, run_id=self.run_id)
        final = await self.evaluator(current).evaluate(self.harness, self.tasks["holdout"], "holdout", fw.eval_epochs,
                                                       fw.eval_seed, run_id=self.run_id)
        report = final_report(self.base, current, base, final, fw.eval_epochs, self.cfg.loop.alpha)
        self.p.ledger.add_event("flywheel_final_holdout", report, run_id=self.run_id)
        return report

    def write_card(self) -> Path:
        path = self.cfg.state_dir / "flywheel" / self.run_id / "DATA_CARD.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(card_markdown(self.run_id, self.store.generations(self.run_id)))
        return path

    async def aclose(self) -> None:
        await self.models.aclose()


@contextmanager
def _timed(seconds: dict[str, float], stage: str) -> Iterator[None]:
    """Add the stage's wall time to `seconds` (summed over the sessions of a resumed run) when it finishes."""
    t0 = time.monotonic()
    yield
    seconds[stage] = round(seconds.get(stage, 0.0) + time.monotonic() - t0, 1)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


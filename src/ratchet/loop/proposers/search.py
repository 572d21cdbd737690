"""Search over the knobs that params.toml declares (plus one on/off switch per library skill) with
Optuna's TPE sampler. It proposes a new params.toml and nothing else.

The study is rebuilt from the stored history at every proposal, with a sampler seeded by (seed, round,
history length), so a resumed run proposes exactly what the uninterrupted run would have.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import warnings
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from ratchet.harness.params import HarnessParams, Knob, update_values_text, with_values
from ratchet.loop.proposers.base import Proposal, ProposalContext, ProposalError

SKILL_PREFIX = "skill:"
PARAMS_FILE = "params.toml"
_REASKS = 5
_STARTUP_TRIALS = 5


def _far_end(dist: BaseDistribution, value: Any) -> Any:
    """The end of a numeric knob's range farther from `value` (None for other knobs, or with no range)."""
    if isinstance(dist, (IntDistribution, FloatDistribution)) and isinstance(value, (int, float)) and dist.low < dist.high:
        return dist.low if value - dist.low >= dist.high - value else dist.high
    return None


def derive_seed(*parts: object) -> int:
    """A stable 32-bit seed from any parts (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "big")


def _knob_distribution(k: Knob) -> BaseDistribution | None:
    if k.type == "float" and k.low < k.high:
        return FloatDistribution(k.low, k.high, log=k.log)
    if k.type == "int" and k.low < k.high:
        return IntDistribution(int(k.low), int(k.high), log=k.log)
    if k.type == "bool":
        return CategoricalDistribution([False, True])
    if k.type == "choice" and len(k.choices) > 1:
        return CategoricalDistribution(list(k.choices))
    return None  # str knobs and knobs with a single possible value are not searched


def search_space(params: HarnessParams) -> dict[str, BaseDistribution]:
    space = {name: d for name, k in params.knobs.items() if (d := _knob_distribution(k)) is not None}
    space.update({SKILL_PREFIX + s: CategoricalDistribution([False, True]) for s in params.skills_library})
    return space


def point_of(params: HarnessParams, space: dict[str, BaseDistribution]) -> dict[str, Any]:
    """The parent's coordinates in the search space."""
    point = {}
    for name in space:
        if name.startswith(SKILL_PREFIX):
            point[name] = name[len(SKILL_PREFIX):] in params.skills_enabled
        else:
            point[name] = params.knobs[name].value
    return point


def _same(a: Any, b: Any) -> bool:
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _same_point(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)


def _params_at(params: HarnessParams, point: dict[str, Any]) -> HarnessParams:
    knob_values = {k: v for k, v in point.items() if not k.startswith(SKILL_PREFIX)}
    enabled = [s for s in params.skills_library if point.get(SKILL_PREFIX + s, s in params.skills_enabled)]
    return with_values(params, knob_values, enabled)


def _round(v: Any, dist: BaseDistribution) -> Any:
    """Four significant digits: readable params.toml, and near-equal points become equal (dedup)."""
    if not isinstance(dist, FloatDistribution):
        return v
    return min(max(float(f"{v:.4g}"), dist.low), dist.high)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else repr(v)


def describe_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    out = []
    for name in after:
        if _same(before.get(name), after[name]):
            continue
        if name.startswith(SKILL_PREFIX):
            out.append(f"skill {name[len(SKILL_PREFIX):]} {'off -> on' if after[name] else 'on -> off'}")
        else:
            out.append(f"{name} {_fmt(before.get(name))} -> {_fmt(after[name])}")
    return out


class SearchProposer:
    name = "search"

    def __init__(self, seed: int = 0, startup_trials: int = _STARTUP_TRIALS, startup: str = "random"):
        """startup: how the first `startup_trials` points are drawn before TPE has a model. "random": joint
        random points (every knob moves). "one_knob": the parent with one knob moved - with many knobs, a
        joint random move mostly breaks something, and each one-knob trial says which knob matters."""
        if startup not in ("random", "one_knob"):
            raise ValueError(f"startup must be 'random' or 'one_knob', got {startup!r}")
        self.seed = seed
        self.startup_trials = startup_trials
        self.startup = startup
        self.history: list[dict[str, Any]] = []  # {"point": {...}, "score": float | None, "source": str}
        self.explore_left = 0  # proposals still to draw at random after switch_strategy()
        optuna.logging.set_verbosity(optuna.logging.WARNING)

    # --- the study ---------------------------------------------------------------------------
    def _study(self, space: dict[str, BaseDistribution], history: list[dict[str, Any]], sampler_seed: int,
               random_only: bool) -> optuna.Study:
        sampler: optuna.samplers.BaseSampler
        if random_only:
            sampler = optuna.samplers.RandomSampler(seed=sampler_seed)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sampler = optuna.samplers.TPESampler(seed=sampler_seed, n_startup_trials=self.startup_trials)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        for entry in history:
            # keep only coordinates that still exist in the current space (params.toml may have changed)
            point = {k: v for k, v in entry["point"].items() if k in space and self._representable(space[k], v)}
            if not point:
                continue
            state = TrialState.COMPLETE if entry["score"] is not None else TrialState.FAIL
            try:
                study.add_trial(create_trial(state=state, value=entry["score"], params=point,
                                             distributions={k: space[k] for k in point}))
            except ValueError:
                continue
        return study

    @staticmethod
    def _representable(dist: BaseDistribution, value: Any) -> bool:
        if isinstance(dist, CategoricalDistribution):
            return any(_same(value, c) for c in dist.choices)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return dist._contains(dist.to_internal_repr(value))  # within the (possibly narrowed) range

    def _untried_one_knob_move(self, parent: dict[str, Any], space: dict[str, BaseDistribution],
                               r: int) -> dict[str, Any] | None:
        """Coordinate-wise exploration: round r moves the next knob of a seeded order (so five startup
        trials visit five different knobs), a number to the far end of its range first (ends are often
        special: temperature 0 is greedy decoding, a uniform draw never lands there), then at random."""
        names = sorted(space)
        random.Random(derive_seed(self.seed, "knob order")).shuffle(names)
        for k in range(len(names)):
            name = names[(r - 1 + k) % len(names)]
            far = _far_end(space[name], parent[name])
            if far is not None and not self._tried(point := {**parent, name: far}):
                return point
            for attempt in range(_REASKS):
                rng = random.Random(derive_seed(self.seed, r, "one_knob", name, attempt))
                point = self._perturb(parent, {name: space[name]}, rng)
                if not self._tried(point):
                    return point
        return None

    def _tried(self, point: dict[str, Any]) -> bool:
        return any(_same_point(point, e["point"]) and e["score"] is not None for e in self.history)

    def _perturb(self, parent: dict[str, Any], space: dict[str, BaseDistribution],
                 rng: random.Random) -> dict[str, Any]:
        """The parent with one knob moved to another value."""
        point = dict(parent)
        names = sorted(space)
        rng.shuffle(names)
        for name in names:
            dist = space[name]
            if isinstance(dist, CategoricalDistribution):
                others = [c for c in dist.choices if not _same(c, parent[name])]
                if others:
                    point[name] = rng.choice(others)
                    return point
            elif isinstance(dist, IntDistribution):
                others = [v for v in range(dist.low, dist.high + 1) if v != parent[name]]
                point[name] = rng.choice(others)
                return point
            elif isinstance(dist, FloatDistribution):
                for _ in range(16):
                    u = rng.random()
                    v = (math.exp(math.log(dist.low) + u * (math.log(dist.high) - math.log(dist.low))) if dist.log
                         else dist.low + u * (dist.high - dist.low))
                    v = _round(v, dist)
                    if v != parent[name]:
                        point[name] = v
                        return point
        raise ProposalError("every searchable knob has a single possible value; widen a range in params.toml")

    # --- the protocol ------------------------------------------------------------------------
    async def propose(self, ctx: ProposalContext) -> Proposal:
        """Pure in the proposer's state: everything learnt from this proposal is recorded in observe(),
        so a run killed between the two resumes exactly."""
        space = search_space(ctx.params)
        if not space:
            raise ProposalError("params.toml declares no searchable knob and no skill library, so the search "
                                "proposer has nothing to tune; declare knobs with ranges/choices "
                                "or use proposer = 'llm'")
        parent = point_of(ctx.params, space)
        history = self.history + self._parent_entry(parent, ctx.parent_score)
        random_only = self.explore_left > 0
        study = self._study(space, history, derive_seed(self.seed, ctx.round, len(history), "sampler"), random_only)
        completed = sum(1 for e in history if e["score"] is not None)

        point, source = None, "random (exploring after rejections)" if random_only else "TPE"
        if not random_only and completed < self.startup_trials:
            source = f"random (TPE startup: {completed} of {self.startup_trials} scored trials so far)"
            if self.startup == "one_knob":
                point = self._untried_one_knob_move(parent, space, ctx.round)
                source = f"one-knob move (startup: {completed} of {self.startup_trials} scored trials so far)"
        for _ in range(_REASKS if point is None else 0):
            trial = study.ask(space)
            candidate = {k: _round(trial.params[k], space[k]) for k in space}
            if not _same_point(candidate, parent) and not self._tried(candidate):
                point = candidate
                break
        if point is None:
            point = self._perturb(parent, space, random.Random(derive_seed(self.seed, ctx.round, "perturb")))
            source = "perturbation of one knob (the sampler kept suggesting the parent or tried points)"

        new_params = _params_at(ctx.params, point)
        text = update_values_text(ctx.files.get(PARAMS_FILE, ""), new_params)
        changes = describe_changes(parent, point)
        best = max((e for e in history if e["score"] is not None), key=lambda e: e["score"], default=None)
        rationale = (f"Search over {len(space)} declared knobs ({completed} scored trials); suggestion by {source}. "
                     f"Changed: {'; '.join(changes)}.")
        if best is not None:
            rationale += f" Best scored point so far: {best['score']:.3f}."
        baseline = f"the parent's {ctx.parent_score:.3f}" if ctx.parent_score is not None else "the parent's"
        hypothesis = f"Setting {', '.join(changes)} raises the paired dev mean above {baseline}."
        return Proposal(edits={PARAMS_FILE: text}, rationale=rationale, hypothesis=hypothesis, proposer=self.name,
                        meta={"summary": "; ".join(changes), "search_point": point, "changed": changes, "source": source,
                              "explored": random_only,
                              "parent_point": parent, "parent_score": ctx.parent_score})

    def _parent_entry(self, parent: dict[str, Any], score: float | None) -> list[dict[str, Any]]:
        if score is None or any(_same_point(parent, e["point"]) for e in self.history):
            return []
        return [{"point": dict(parent), "score": score, "source": "parent"}]

    def observe(self, proposal: Proposal, accepted: bool, score: float | None) -> None:
        meta = proposal.meta
        if meta.get("search_point") is None:
            return
        self.history += self._parent_entry(meta.get("parent_point") or {}, meta.get("parent_score"))
        self.history.append({"point": dict(meta["search_point"]), "score": score, "source": proposal.proposer})
        if meta.get("explored"):
            self.explore_left = max(0, self.explore_left - 1)

    def switch_strategy(self) -> None:
        self.explore_left = 3  # TPE has settled on a region that keeps failing: sample broadly for a while

    def state_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps({"seed": self.seed, "startup_trials": self.startup_trials, "startup": self.startup,
                                      "history": self.history, "explore_left": self.explore_left}))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = state["seed"]
        self.startup_trials = state["startup_trials"]
        self.startup = state.get("startup", "random")
        self.history = [dict(e) for e in state["history"]]
        self.explore_left = state["explore_left"]

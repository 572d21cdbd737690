"""The `[flywheel]` table of ratchet.toml: generation, filtering, data mixing, training, evaluation.

The models are sections of the one project config (`ratchet.config.FlywheelSection` and its
`[flywheel.train]` / `[flywheel.judge]` tables), so `load_project` validates them with the rest of the
file; this module names them as the flywheel does and parses a bare table (a run's stored config, a
recipe built in code). Every key has a default, so `[flywheel]` may be empty. The decision settings
(alpha, min_effect, holdout_*) are `[loop]`'s; a `[flywheel]` table that names one is an error.

    [flywheel]
    samples_per_task = 8       # K rollouts per train task and generation
    temperature = 1.0          # sampling temperature of generation (the harness's own value when unset)
    min_score = 1.0            # verified-good threshold on the outcome score
    ...
    [flywheel.train]
    method = "sft"             # sft | dpo | both
    lora_r = 16
    ...
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ratchet.config import DECISION_KEYS, ConfigError, FlywheelSection, JudgeSection, TrainSection, config_problems

# the names the flywheel modules use for the project config's sections
FlywheelConfig = FlywheelSection
TrainConfig = TrainSection
JudgeConfig = JudgeSection

__all__ = ["DECISION_KEYS", "FlywheelConfig", "JudgeConfig", "TrainConfig", "parse_flywheel", "with_overrides"]


def parse_flywheel(raw: dict[str, Any] | FlywheelConfig | None) -> FlywheelConfig:
    """The [flywheel] table (a dict, or the project's already validated section) as a FlywheelConfig."""
    if isinstance(raw, FlywheelConfig):
        return raw
    try:
        return FlywheelConfig.model_validate(dict(raw or {}))
    except ValidationError as e:
        raise ConfigError(_table_error(e)) from None


def with_overrides(cfg: FlywheelConfig, **changes: Any) -> FlywheelConfig:
    """A copy with command-line overrides (None values are ignored), validated again."""
    changes = {k: v for k, v in changes.items() if v is not None}
    return parse_flywheel({**cfg.to_json(), **changes})


def _table_error(err: ValidationError) -> str:
    """`[flywheel.train]: unknown key(s) ['metod']; known keys are [...]`, then one line per other problem."""
    problems = config_problems(err, FlywheelConfig, prefix=("flywheel",))
    unknown: dict[tuple[str, ...], list[str]] = {}
    lines = []
    for p in problems:
        if p.kind == "extra_forbidden":
            unknown.setdefault(p.loc[:-1], []).append(p.loc[-1])
        else:
            lines.append(f"[{p.where}] {p.text}")
    known = {p.loc[:-1]: list(p.known) for p in problems if p.kind == "extra_forbidden"}
    heads = [f"[{'.'.join(table)}]: unknown key(s) {sorted(keys)}; known keys are {known[table]}"
             for table, keys in unknown.items()]
    return "\n".join(heads + lines)

"""[flywheel] parsing: defaults, validation messages that say what to fix, overrides."""

import pytest

from ratchet.config import ConfigError
from ratchet.flywheel.config import FlywheelConfig, parse_flywheel, with_overrides


def test_empty_table_gives_defaults():
    cfg = parse_flywheel({})
    assert cfg == FlywheelConfig()
    assert cfg.train.method == "sft" and not cfg.train.full_finetune and cfg.judge is None


def test_nested_train_and_judge_tables():
    cfg = parse_flywheel({"samples_per_task": 3, "train": {"method": "both", "lora_r": 4, "lora_targets": ["q_proj"]},
                          "judge": {"kind": "constitution", "text": "Be correct."}})
    assert cfg.samples_per_task == 3 and cfg.train.method == "both" and cfg.train.lora_targets == ("q_proj",)
    assert cfg.judge.kind == "constitution"


@pytest.mark.parametrize("raw, words", [
    ({"samples": 4}, "unknown key(s) ['samples']"),
    ({"train": {"metod": "sft"}}, "[flywheel.train]: unknown key(s) ['metod']"),
    ({"train": {"method": "ppo"}}, "use sft, dpo or both"),
    ({"fresh_ratio": 0.0}, "fresh_ratio must be in (0, 1]"),
    ({"ngram": 1}, "single tokens match everywhere"),
    ({"judge": {"kind": "rubric"}}, "one of them"),
    ({"judge": {"kind": "rubric", "text": "x", "path": "r.md"}}, "one of them"),
    ({"train": "sft"}, "[flywheel.train]"),
])
def test_bad_values_name_the_fix(raw, words):
    with pytest.raises(ConfigError) as e:
        parse_flywheel(raw)
    assert words in str(e.value)


def test_overrides_ignore_none_and_revalidate():
    cfg = with_overrides(parse_flywheel({}), samples_per_task=None, task_limit=5)
    assert cfg.task_limit == 5 and cfg.samples_per_task == FlywheelConfig().samples_per_task
    with pytest.raises(ConfigError):
        with_overrides(cfg, samples_per_task=0)


def test_example_project_table_parses():
    import tomllib
    from pathlib import Path

    raw = tomllib.loads((Path(__file__).parents[1] / "examples" / "arithmetic" / "ratchet.toml").read_text())
    cfg = parse_flywheel(raw["flywheel"])
    assert cfg.generations == 2 and cfg.train.method == "sft"

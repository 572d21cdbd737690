from pathlib import Path

import pytest

from ratchet.config import ConfigError
from ratchet.harness.params import Knob, load_params, parse_params, render_params, update_values_text, with_values

TEXT = """# harness knobs
[temperature]
type = "float"
range = [0.0, 1.0]
value = 0  # greedy

[n_samples]
type = "int"
range = [1, 16]
log = true
value = 4

[style]
type = "choice"
choices = ["plain", "cot"]
value = "plain"
doc = "how the prompt asks"

[verify]
type = "bool"
value = false

[prefix]
type = "str"
value = "Answer: \\"x\\" #1"

[skills]
library = ["calculator", "python", "memory"]
enabled = ["python"]
"""


def test_parse_values_and_types():
    p = parse_params(TEXT, "params.toml")
    assert list(p.knobs) == ["temperature", "n_samples", "style", "verify", "prefix"]
    assert p.values() == {"temperature": 0.0, "n_samples": 4, "style": "plain", "verify": False,
                          "prefix": 'Answer: "x" #1'}
    assert isinstance(p.knobs["temperature"].value, float)
    assert p.knobs["n_samples"].log and p.knobs["style"].choices == ("plain", "cot")
    assert p.skills_library == ["calculator", "python", "memory"] and p.skills_enabled == ["python"]


def test_render_round_trips_and_keeps_order():
    p = parse_params(TEXT)
    text = render_params(p)
    assert parse_params(text) == p
    assert text.index("[temperature]") < text.index("[n_samples]") < text.index("[skills]")
    assert parse_params("") == parse_params(render_params(parse_params("")))


def test_with_values_validates():
    p = parse_params(TEXT)
    q = with_values(p, {"temperature": 0.5, "style": "cot"}, ["calculator"])
    assert q.values()["temperature"] == 0.5 and q.values()["style"] == "cot" and q.skills_enabled == ["calculator"]
    assert p.values()["temperature"] == 0.0  # the original is unchanged
    with pytest.raises(ConfigError, match=r"temperature.*outside range"):
        with_values(p, {"temperature": 2.0})
    with pytest.raises(ConfigError, match="no knob"):
        with_values(p, {"nope": 1})
    with pytest.raises(ConfigError, match="not in library"):
        with_values(p, {}, ["browser"])
    with pytest.raises(ConfigError, match="not one of choices"):
        with_values(p, {"style": "poem"})


def test_update_values_text_keeps_comments():
    p = parse_params(TEXT)
    q = with_values(p, {"temperature": 0.25, "prefix": "a#b"}, ["python", "memory"])
    out = update_values_text(TEXT, q)
    assert "# harness knobs" in out and "value = 0.25  # greedy" in out
    assert parse_params(out) == q


@pytest.mark.parametrize("body, message", [
    ('[t]\ntype = "float"\nrange = [0, 1]\nvalue = 3', "outside range"),
    ('[t]\ntype = "float"\nvalue = 0.5', "range = \\[low, high\\]"),
    ('[t]\ntype = "number"\nvalue = 1', "unknown"),
    ('[t]\ntype = "int"\nrange = [1, 4]\nvalue = 2.5', "must be an integer"),
    ('[t]\ntype = "float"\nrange = [0, 1]\nlog = true\nvalue = 0.5', "log = true needs a range above 0"),
    ('[t]\ntype = "choice"\nchoices = []\nvalue = "a"', "needs choices"),
    ('[t]\ntype = "bool"\nvalue = 1', "true or false"),
    ('[t]\ntype = "choice"\nchoices = [true, false]\nvalue = 1', "not one of choices"),
    ('[t]\ntype = "float"\nrange = [0, 1]\nvalue = 0.5\nmax = 3', "unknown key"),
    ('[t]\nvalue = 0.5', "needs both type and value"),
    ("t = 3", "not a table"),
    ('[skills]\nlibrary = ["a"]\nenabled = ["b"]', "not in library"),
    ("[t\n", "not valid TOML"),
])
def test_errors_name_file_knob_and_fix(body, message):
    with pytest.raises(ConfigError, match=message) as err:
        parse_params(body, "h/params.toml")
    assert str(err.value).startswith("h/params.toml")
    if body.startswith("[t]"):
        assert "[t]" in str(err.value)


def test_knob_direct_validation_and_load(tmp_path: Path):
    assert Knob("x", "int", 3, low=1, high=5).accepts(5)
    assert not Knob("x", "int", 3, low=1, high=5).accepts(6)
    with pytest.raises(ConfigError, match="knob \\[x\\]"):
        Knob("x", "float", 0.5, low=1.0, high=0.0)
    with pytest.raises(ConfigError, match="no such file"):
        load_params(tmp_path / "params.toml")
    (tmp_path / "params.toml").write_text(TEXT)
    assert load_params(tmp_path / "params.toml") == parse_params(TEXT)

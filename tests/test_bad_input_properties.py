"""Property-based tests (hypothesis) for the three parsers that read what people and models write:
ratchet.toml (parse_project), params.toml (parse_params) and proposer patches (parse_edits/apply_edits).

Whatever the input, each either returns a value or raises its own error type with a message (never
another exception), and well-formed input round-trips."""

from __future__ import annotations

import re
import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ratchet.config import ConfigError, ProjectConfig, parse_project
from ratchet.harness.params import SAMPLING_KNOBS, parse_params, render_params
from ratchet.loop.edits import EditError, apply_edits, parse_edits

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_ROOT = Path(tempfile.mkdtemp(prefix="ratchet-props-"))
(_ROOT / "harness").mkdir()

# -- ratchet.toml -------------------------------------------------------------------------------------

SECTIONS = {name: sorted(field.annotation and ProjectConfig.model_fields[name].annotation.model_fields)  # type: ignore[union-attr]
            for name, field in ProjectConfig.model_fields.items() if name not in ("root", "flywheel", "research")}
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=6)


@st.composite
def project_dicts(draw) -> dict:
    """Mostly real section and key names (so validation goes deep), with arbitrary values and some junk."""
    raw: dict = {}
    for section in draw(st.lists(st.sampled_from([*SECTIONS, "junk"]), max_size=4, unique=True)):
        keys = SECTIONS.get(section, ["x"])
        raw[section] = draw(st.dictionaries(st.one_of(st.sampled_from(keys), st.text(max_size=6)), values, max_size=4))
    if draw(st.booleans()):
        raw[draw(st.text(max_size=6))] = draw(values)
    return raw


@SETTINGS
@given(project_dicts())
def test_parse_project_returns_a_config_or_a_config_error(raw: dict) -> None:
    try:
        cfg = parse_project(raw, root=_ROOT)
    except ConfigError as e:
        assert str(e).strip(), "a ConfigError must say what to fix"
        return
    assert isinstance(cfg, ProjectConfig)
    again = parse_project(cfg.model_dump(exclude={"root"}), root=_ROOT)  # what was accepted is stable
    assert again.model_dump() == cfg.model_dump()


@SETTINGS
@given(section=st.sampled_from(["eval", "sandbox", "loop"]), data=st.data())
def test_a_bad_value_is_reported_with_its_section_and_key(section: str, data) -> None:
    numeric = [k for k, f in ProjectConfig.model_fields[section].annotation.model_fields.items()  # type: ignore[union-attr]
               if f.annotation in (int, float)]
    key = data.draw(st.sampled_from(numeric))
    bad = data.draw(st.sampled_from(["many", [1, 2], {"a": 1}, -10**9]))
    try:
        parse_project({section: {key: bad}}, root=_ROOT)
    except ConfigError as e:
        assert f"[{section}.{key}]" in str(e)
    else:  # a negative number is fine for a few unbounded keys (seed, min_effect)
        assert bad == -10**9


# -- params.toml --------------------------------------------------------------------------------------

# free knob names: not the [skills] table, and not a sampling parameter's (those have ranges and types of their
# own, checked by test_sampling_knobs; a float knob named top_k is rightly an error)
names = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=10).filter(
    lambda n: n != "skills" and n not in SAMPLING_KNOBS)


@st.composite
def float_knobs(draw) -> tuple[str, float, float, float]:
    low = draw(st.floats(-1e6, 1e6, allow_nan=False))
    high = draw(st.floats(low, 1e6, allow_nan=False))
    value = draw(st.floats(low, high, allow_nan=False))
    return draw(names), low, high, value


@SETTINGS
@given(st.text(max_size=300))
def test_parse_params_on_any_text_returns_params_or_a_config_error(text: str) -> None:
    try:
        params = parse_params(text, "params.toml")
    except ConfigError as e:
        assert str(e).startswith("params.toml:"), "the message must name the file"
        return
    assert parse_params(render_params(params)) == params


@SETTINGS
@given(st.lists(float_knobs(), min_size=1, max_size=4, unique_by=lambda k: k[0]))
def test_declared_knobs_round_trip(knobs: list[tuple[str, float, float, float]]) -> None:
    text = "\n".join(f'[{n}]\ntype = "float"\nrange = [{lo!r}, {hi!r}]\nvalue = {v!r}\n' for n, lo, hi, v in knobs)
    params = parse_params(text)
    assert {n: k.value for n, k in params.knobs.items()} == {n: v for n, _, _, v in knobs}
    assert parse_params(render_params(params)) == params


@SETTINGS
@given(float_knobs(), st.floats(1e-3, 1e6, allow_nan=False))
def test_a_value_outside_its_range_names_the_knob(knob: tuple[str, float, float, float], beyond: float) -> None:
    name, low, high, _ = knob
    assume(high + beyond > high)
    with pytest.raises(ConfigError, match=re.escape(f"[{name}]")):
        parse_params(f'[{name}]\ntype = "float"\nrange = [{low!r}, {high!r}]\nvalue = {high + beyond!r}\n')


# -- patches ------------------------------------------------------------------------------------------

lines = st.text(alphabet=string.ascii_letters + string.digits + " _=()#:'\"+-*/<>", max_size=30)
marker_lines = st.sampled_from(["<<<<<<< SEARCH", "=======", ">>>>>>> REPLACE", "--- a/harness.py", "+++ b/harness.py",
                                "@@ -1,2 +1,2 @@", "harness.py", "path: prompts/x.md", "```", "-old", "+new", " ctx"])


@SETTINGS
@given(st.lists(st.one_of(lines, marker_lines), max_size=25))
def test_parse_and_apply_edits_never_fail_with_anything_but_edit_error(answer_lines: list[str]) -> None:
    files = {"harness.py": "def solve(task, ctx):\n    return ctx.llm(task.input)\n", "prompts/x.md": "Be brief.\n"}
    try:
        out = apply_edits(files, parse_edits("\n".join(answer_lines)))
    except EditError as e:
        assert str(e).strip()
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in out.items())


@SETTINGS
@given(st.lists(lines, min_size=1, max_size=12), st.data())
def test_a_search_replace_block_edits_exactly_what_it_names(body: list[str], data) -> None:
    body = [f"L{i:02d}| {line}" for i, line in enumerate(body)]  # numbered with a "|" no line holds: each run is unique
    start = data.draw(st.integers(0, len(body) - 1))
    end = data.draw(st.integers(start + 1, len(body)))
    replacement = data.draw(st.lists(lines, max_size=4))
    assume(any(s.strip() for s in body[start:end]))
    content = "".join(line + "\n" for line in body)
    block = ["notes.md", "<<<<<<< SEARCH", *body[start:end], "=======", *replacement, ">>>>>>> REPLACE"]
    answer = "Here is the change.\n\n" + "\n".join(block) + "\n"
    out = apply_edits({"notes.md": content}, parse_edits(answer))
    expected = "".join(line + "\n" for line in body[:start] + replacement + body[end:])
    assert out["notes.md"] == expected

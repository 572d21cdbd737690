"""params.toml edits through tomlkit: comments and layout stay, values change, odd files fall back to a render."""

from ratchet.harness.params import parse_params, render_params, update_values_text, with_values

TEXT = """# top
[temperature]   # the knob
type = "float"
# a comment line
range = [0.0, 1.0]
value = 0.5 # half

[skills]
library = ["a", "b"]
enabled = [
  "a",  # first
]  # trailing
"""


def test_edit_keeps_comment_lines_header_comments_and_spacing():
    q = with_values(parse_params(TEXT), {"temperature": 0.75}, ["a", "b"])
    out = update_values_text(TEXT, q)
    assert out == TEXT.replace("value = 0.5 # half", "value = 0.75 # half").replace(
        'enabled = [\n  "a",  # first\n]  # trailing', 'enabled = ["a", "b"]  # trailing')
    assert parse_params(out) == q


def test_inline_table_knobs_are_edited_in_place():
    text = 'temperature = { type = "float", range = [0.0, 1.0], value = 0.5 }  # inline\n'
    q = with_values(parse_params(text), {"temperature": 0.25})
    assert update_values_text(text, q) == text.replace("0.5 }", "0.25 }")


def test_a_knob_without_a_value_line_falls_back_to_render():
    q = with_values(parse_params(TEXT), {"temperature": 0.75})
    stale = TEXT.replace("value = 0.5 # half\n", "")
    assert update_values_text(stale, q) == render_params(q)


def test_render_layout():
    text = ('[t]\ntype = "float"\nrange = [0.1, 1.0]\nlog = true\nvalue = 0.5\ndoc = "a \\"b\\""\n\n'
            '["a b"]\ntype = "choice"\nchoices = ["x", 1]\nvalue = 1\n\n[skills]\nlibrary = ["c"]\nenabled = []\n')
    assert render_params(parse_params(text)) == text
    assert render_params(parse_params("")) == ""

from pathlib import Path

from ratchet.config import GuardSection
from ratchet.loop.guard import (
    check_candidate,
    check_fingerprints,
    diff_line_count,
    fingerprint_paths,
    matches_any,
    proposal_fingerprint,
)

PARAMS = '[temperature]\ntype = "float"\nrange = [0.0, 1.0]\nvalue = 0.0\n'


def small_diff(n: int) -> str:
    return "diff --git a/harness.py b/harness.py\n--- a/harness.py\n+++ b/harness.py\n@@ -1,1 +1,1 @@\n" + \
        "".join(f"-old {i}\n+new {i}\n" for i in range(n))


def test_clean_candidate_passes():
    v = check_candidate({"harness.py": "def solve(task, ctx):\n    return '1'\n"}, small_diff(1), GuardSection())
    assert v.ok and v.reasons == [] and not v.risky


def test_protected_paths_rejected():
    guard = GuardSection(protected=["secrets/*"])
    for path in ["scorers/check.py", "suite/tasks.json", "data/x/y.txt", "deep/down/answers.jsonl",
                 "ratchet.toml", "secrets/key.txt", "../outside.py", ".git/config"]:
        v = check_candidate({path: "x = 1\n"}, small_diff(1), guard)
        assert not v.ok, path
        assert any(path in r for r in v.reasons), v.reasons
    assert check_candidate({"prompts/system.md": "hi"}, small_diff(1), guard).ok


def test_diff_size_limit_and_risky_when_large():
    guard = GuardSection(max_diff_lines=20)
    assert diff_line_count(small_diff(5)) == 10
    too_big = check_candidate({"harness.py": "x = 1\n"}, small_diff(11), guard)
    assert not too_big.ok and "max_diff_lines" in too_big.reasons[0]
    large = check_candidate({"harness.py": "x = 1\n"}, small_diff(6), guard)
    assert large.ok and large.risky and "large diff" in large.risky_reasons[0]


def test_removed_line_that_looks_like_a_header_still_counts():
    diff = "diff --git a/r.md b/r.md\n--- a/r.md\n+++ b/r.md\n@@ -1,2 +1,1 @@\n--- rule\n+- rule\n"
    assert diff_line_count(diff) == 2


def test_syntax_errors_rejected_without_running_code(tmp_path: Path):
    marker = tmp_path / "ran"
    evil = f"open({str(marker)!r}, 'w').write('x')\n"
    ok = check_candidate({"harness.py": evil}, small_diff(1), GuardSection())
    assert ok.ok and not marker.exists()  # compiled, never executed
    bad = check_candidate({"harness.py": "def solve(:\n"}, small_diff(1), GuardSection())
    assert not bad.ok and "harness.py:1: syntax error" in bad.reasons[0]


def test_params_validity_and_declaration_changes():
    bad = check_candidate({"params.toml": PARAMS.replace("value = 0.0", "value = 7.0")}, small_diff(1), GuardSection())
    assert not bad.ok and "outside range" in bad.reasons[0]
    assert not check_candidate({"params.toml": None}, small_diff(1), GuardSection()).ok
    widened = check_candidate({"params.toml": PARAMS.replace("1.0]", "2.0]")}, small_diff(1), GuardSection(),
                              parent_files={"params.toml": PARAMS})
    assert widened.ok and widened.risky and "declarations" in widened.risky_reasons[0]
    value_only = check_candidate({"params.toml": PARAMS.replace("value = 0.0", "value = 0.5")}, small_diff(1),
                                 GuardSection(), parent_files={"params.toml": PARAMS})
    assert value_only.ok and not value_only.risky


def test_risky_paths_and_empty_candidate():
    v = check_candidate({"skills/web.py": "x = 1\n"}, small_diff(1), GuardSection())
    assert v.ok and v.risky and "skills/web.py" in v.risky_reasons[0]
    assert not check_candidate({}, "", GuardSection()).ok


def test_glob_semantics():
    assert matches_any("a/b/c.jsonl", ["*.jsonl"])
    assert matches_any("scorers/x/y.py", ["scorers/**"])
    assert not matches_any("lib/scorers/y.py", ["scorers/**"])  # anchored: has a slash
    assert matches_any("lib/sandbox_util.py", ["sandbox*"])
    assert not matches_any("harness.py", ["*.jsonl", "scorers/**"])


def test_fingerprints_detect_changed_added_removed_scorer(tmp_path: Path):
    (tmp_path / "scorers").mkdir()
    (tmp_path / "scorers" / "check.py").write_text("def score(a, b): return a == b\n")
    (tmp_path / "data.jsonl").write_text('{"id": 1}\n')
    (tmp_path / "harness.py").write_text("x = 1\n")
    patterns = ["scorers/**", "*.jsonl"]
    before = fingerprint_paths(tmp_path, patterns)
    assert set(before) == {"scorers/check.py", "data.jsonl"}
    assert check_fingerprints(before, fingerprint_paths(tmp_path, patterns)) == []
    (tmp_path / "harness.py").write_text("x = 2\n")  # not watched
    assert check_fingerprints(before, fingerprint_paths(tmp_path, patterns)) == []
    (tmp_path / "scorers" / "check.py").write_text("def score(a, b): return True\n")
    (tmp_path / "data.jsonl").unlink()
    (tmp_path / "scorers" / "extra.py").write_text("")
    problems = check_fingerprints(before, fingerprint_paths(tmp_path, patterns))
    assert any("scorers/check.py changed" in p for p in problems)
    assert "data.jsonl was removed" in problems and "scorers/extra.py was added" in problems


def test_near_identical_proposals_share_a_fingerprint():
    base = {"harness.py": "def solve(task, ctx):\n    # ask the model\n    return ctx.llm(task.input)\n",
            "rules.md": "Be brief.\nShow work.\n",
            "params.toml": PARAMS}
    reworded = {"harness.py": "def solve(task, ctx):  # entry point\n\n    # query the model once\n"
                              "    return ctx.llm( task.input )\n",
                "rules.md": "Be brief.   Show work.\n\n",
                "params.toml": "# knobs\n" + PARAMS.replace("value = 0.0", "value   = 0.0")}
    assert proposal_fingerprint(base) == proposal_fingerprint(reworded)
    changed_code = dict(base, **{"harness.py": base["harness.py"].replace("task.input", "task.input.strip()")})
    changed_prompt = dict(base, **{"rules.md": "Be brief.\nShow all work.\n"})
    changed_value = dict(base, **{"params.toml": PARAMS.replace("value = 0.0", "value = 0.1")})
    fps = {proposal_fingerprint(x) for x in (base, changed_code, changed_prompt, changed_value)}
    assert len(fps) == 4
    broken = {"harness.py": "def solve(:\n  # a\n"}
    assert proposal_fingerprint(broken) == proposal_fingerprint({"harness.py": "def solve(:\n  # b\n"})

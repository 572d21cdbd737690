import os
import subprocess
from pathlib import Path

import pytest

from ratchet.loop.gitrepo import CandidateRepo, GitError

ENV = {**os.environ, "GIT_AUTHOR_NAME": "user", "GIT_AUTHOR_EMAIL": "u@x", "GIT_COMMITTER_NAME": "user",
       "GIT_COMMITTER_EMAIL": "u@x"}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=ENV, check=True, capture_output=True, text=True).stdout.strip()


def make_harness(d: Path) -> Path:
    (d / "prompts").mkdir(parents=True)
    (d / "harness.py").write_text("def solve(task, ctx):\n    return '0'\n")
    (d / "params.toml").write_text('[t]\ntype = "float"\nrange = [0.0, 1.0]\nvalue = 0.0\n')
    (d / "prompts" / "system.md").write_text("Answer briefly.\n")
    return d


def parent_repo(tmp_path: Path) -> tuple[Path, Path]:
    """A user's repo with the harness in a subdirectory and other files around it."""
    repo = tmp_path / "proj"
    harness = make_harness(repo / "agent" / "harness")
    (repo / "README.md").write_text("hello\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "user commit")
    return repo, harness


def test_fresh_repo_seed_candidate_worktree_best_diff(tmp_path: Path):
    harness = make_harness(tmp_path / "h")
    repo = CandidateRepo(harness, "run1")
    seed = repo.ensure_repo()
    assert git(harness, "rev-parse", "HEAD") == seed  # a fresh repo gets the seed on its branch
    assert git(harness, "status", "--porcelain") == ""
    assert repo.ensure_repo() == seed  # resume: same seed
    assert repo.best() == seed and repo.seed() == seed
    files = repo.read_files(seed)
    assert set(files) == {"harness.py", "params.toml", "prompts/system.md"}

    cand = repo.commit_candidate(seed, {"prompts/system.md": "Answer briefly. Show work.\n",
                                        "skills/new.py": "X = 1\n", "harness.py": None}, "try show work")
    # no checkout happened: the working tree and branch are as they were
    assert git(harness, "rev-parse", "HEAD") == seed and git(harness, "status", "--porcelain") == ""
    assert (harness / "harness.py").exists()
    assert repo.read_files(cand)["prompts/system.md"] == "Answer briefly. Show work.\n"
    assert "harness.py" not in repo.read_files(cand)
    assert sorted(repo.changed_paths(seed, cand)) == ["harness.py", "prompts/system.md", "skills/new.py"]
    diff = repo.diff(seed, cand)
    assert "+Answer briefly. Show work." in diff and "a/prompts/system.md" in diff
    assert repo.refs()["cand/1"] == cand

    wt = repo.worktree(cand)
    assert (wt / "skills" / "new.py").read_text() == "X = 1\n" and not (wt / "harness.py").exists()
    assert wt.is_relative_to(tmp_path / ".ratchet" / "worktrees")
    assert repo.worktree(cand) == wt  # reused
    (wt / "skills" / "new.py").write_text("tampered")
    assert (repo.worktree(cand, fresh=True) / "skills" / "new.py").read_text() == "X = 1\n"
    repo.worktree(seed)
    assert repo.clean_worktrees(keep=[seed]) == 1 and not wt.exists()

    repo.move_best(cand)
    assert repo.best() == cand
    assert git(harness, "rev-parse", "ratchet/run1") == cand
    assert repo.verify_refs({"best": cand, "seed": seed, "cand/1": cand}) == []
    problems = repo.verify_refs({"best": seed, "cand/7": cand})
    assert len(problems) == 2 and any("missing" in p for p in problems)


def test_inside_parent_repo_user_branch_untouched_until_adopt(tmp_path: Path):
    repo_dir, harness = parent_repo(tmp_path)
    user_head = git(repo_dir, "rev-parse", "HEAD")
    (harness / "rules.md").write_text("Be careful.\n")  # uncommitted user change in the harness
    (repo_dir / "README.md").write_text("dirty readme\n")  # unrelated uncommitted change
    status_before = git(repo_dir, "status", "--porcelain")

    repo = CandidateRepo(harness, "r2", state_dir=repo_dir / ".ratchet")
    seed = repo.ensure_repo()
    assert seed != user_head  # the dirty harness was snapshotted ...
    assert git(repo_dir, "rev-parse", "HEAD") == user_head  # ... without touching the user's branch
    assert git(repo_dir, "status", "--porcelain") == status_before
    assert repo.read_files(seed)["rules.md"] == "Be careful.\n"  # paths relative to the harness dir

    cand = repo.commit_candidate(seed, {"rules.md": "Be careful. Check units.\n"}, "units")
    assert repo.changed_paths(seed, cand) == ["rules.md"]
    assert repo.diff(seed, cand).startswith("diff --git a/rules.md b/rules.md")
    wt = repo.worktree(cand)
    assert (wt / "rules.md").read_text() == "Be careful. Check units.\n" and (wt / "harness.py").exists()
    assert not (wt / "README.md").exists()  # only the harness dir is checked out
    assert git(repo_dir, "rev-parse", "HEAD") == user_head
    assert git(repo_dir, "status", "--porcelain") == status_before  # .ratchet/worktrees is ignored

    new_head = repo.adopt(cand)
    assert git(repo_dir, "rev-parse", "HEAD") == new_head == cand  # fast-forward
    assert (harness / "rules.md").read_text() == "Be careful. Check units.\n"
    assert (repo_dir / "README.md").read_text() == "dirty readme\n"  # the user's other work is left alone
    assert git(repo_dir, "status", "--porcelain", "--", "agent") == ""


def test_adopt_after_user_commits_elsewhere_and_refuses_new_harness_edits(tmp_path: Path):
    repo_dir, harness = parent_repo(tmp_path)
    repo = CandidateRepo(harness, "r3", state_dir=repo_dir / ".ratchet")
    seed = repo.ensure_repo()
    assert seed == git(repo_dir, "rev-parse", "HEAD")  # clean harness: the seed is the user's commit
    cand = repo.commit_candidate(seed, {"harness.py": "def solve(task, ctx):\n    return '1'\n"}, "one")

    (repo_dir / "NOTES.md").write_text("notes\n")
    git(repo_dir, "add", "NOTES.md")
    git(repo_dir, "commit", "-q", "-m", "user keeps working")
    user_head = git(repo_dir, "rev-parse", "HEAD")

    (harness / "harness.py").write_text("# my own edit\n")
    with pytest.raises(GitError, match="changes made after"):
        repo.adopt(cand)
    git(repo_dir, "checkout", "--", "agent/harness/harness.py")

    new_head = repo.adopt(cand)
    assert git(repo_dir, "rev-parse", "HEAD^") == user_head  # a new commit on top of the user's work
    assert (repo_dir / "NOTES.md").exists()
    assert "return '1'" in (harness / "harness.py").read_text()
    assert git(repo_dir, "show", f"{new_head}:agent/harness/harness.py").endswith("return '1'")
    assert git(repo_dir, "status", "--porcelain") == ""


def test_bad_inputs(tmp_path: Path):
    harness = make_harness(tmp_path / "h")
    with pytest.raises(ValueError, match="run id"):
        CandidateRepo(harness, "bad run/..")
    repo = CandidateRepo(harness, "ok")
    seed = repo.ensure_repo()
    with pytest.raises(GitError, match="leaves the harness dir"):
        repo.commit_candidate(seed, {"../x.py": "1"}, "escape")
    with pytest.raises(GitError, match="not a commit"):
        repo.worktree("deadbeef")


def test_ignored_harness_dir_is_an_error(tmp_path: Path):
    repo_dir, harness = parent_repo(tmp_path)
    other = make_harness(repo_dir / "ignored")
    (repo_dir / ".gitignore").write_text("ignored/\n")
    with pytest.raises(GitError, match="ignored"):
        CandidateRepo(other, "r").ensure_repo()


def test_adopt_refuses_to_drop_later_harness_commits(tmp_path: Path):
    harness = make_harness(tmp_path / "h")
    git(harness, "init", "-q", "-b", "main")
    git(harness, "add", "-A")
    git(harness, "commit", "-q", "-m", "user")
    repo = CandidateRepo(harness, "r4")
    seed = repo.ensure_repo()
    cand = repo.commit_candidate(seed, {"rules.md": "r\n"}, "rules")
    (harness / "other.txt").write_text("mine\n")  # the harness is the repo root: this is a harness change
    git(harness, "add", "other.txt")
    git(harness, "commit", "-q", "-m", "user edits the harness")
    with pytest.raises(GitError, match="git merge ratchet/r4"):
        repo.adopt(cand)
    assert (harness / "other.txt").exists() and not (harness / "rules.md").exists()

"""Candidates are git commits: a run's seed, candidates and best live under refs/ratchet/<run>/.

The harness dir may be a repo of its own or a subdirectory of a bigger one; every path this module
takes or returns is relative to the harness dir. Candidate commits are built with plumbing on a
temporary index (no checkout), so the user's branch, index and working tree are untouched until
`adopt`, the one method that writes to them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ratchet.loop.edits import EditError, normalize_path

# fixed identity, so commits work in CI and containers without any git config
_IDENTITY = {
    "GIT_AUTHOR_NAME": "ratchet", "GIT_AUTHOR_EMAIL": "ratchet@localhost",
    "GIT_COMMITTER_NAME": "ratchet", "GIT_COMMITTER_EMAIL": "ratchet@localhost",
}
# variables that would point git at some other repo or index than the one we mean
_LEAKY_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_PREFIX",
              "GIT_NAMESPACE", "GIT_CEILING_DIRECTORIES")
_SNAPSHOT_EXCLUDES = (":(exclude,glob)**/__pycache__/**", ":(exclude,glob)**/*.pyc", ":(exclude,glob)**/.ratchet/**")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class GitError(RuntimeError):
    """A git operation that failed; the message has git's own words and what to do."""


class CandidateRepo:
    def __init__(self, harness_dir: str | Path, run_id: str, state_dir: str | Path | None = None):
        if not _RUN_ID.match(run_id) or ".." in run_id or run_id.endswith((".lock", ".")):
            raise ValueError(f"run id {run_id!r} cannot name a git ref; use letters, digits, '-', '_' and '.'")
        self.harness_dir = Path(harness_dir).resolve()
        self.run_id = run_id
        self.state_dir = Path(state_dir).resolve() if state_dir else self.harness_dir.parent / ".ratchet"
        self._root: Path | None = None
        self._prefix = ""  # harness dir relative to the repo root, posix, "" at the root

    # --- refs ----------------------------------------------------------------------------------
    @property
    def ref_base(self) -> str:
        return f"refs/ratchet/{self.run_id}"

    @property
    def best_ref(self) -> str:
        return f"{self.ref_base}/best"

    @property
    def seed_ref(self) -> str:
        return f"{self.ref_base}/seed"

    @property
    def branch_ref(self) -> str:
        return f"refs/heads/ratchet/{self.run_id}"

    def candidate_ref(self, n: int | str) -> str:  # str: a population round's 3b, 3c, ...
        return f"{self.ref_base}/cand/{n}"

    def full_ref(self, name: str) -> str:
        """'best', 'seed', 'cand/3', 'branch' or a full ref name -> the full ref name."""
        if name.startswith("refs/"):
            return name
        return self.branch_ref if name == "branch" else f"{self.ref_base}/{name}"

    # --- plumbing ------------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        if self._root is None:
            top = self._toplevel()
            if top is None:
                raise GitError(f"{self.harness_dir} is not in a git repository; call ensure_repo() first")
            self._set_root(top)
        return self._root  # type: ignore[return-value]

    def _set_root(self, top: Path) -> None:
        self._root = top.resolve()
        rel = self.harness_dir.relative_to(self._root).as_posix()
        self._prefix = "" if rel == "." else rel

    def _env(self, index_file: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _LEAKY_ENV}
        env.update(_IDENTITY)
        if index_file:
            env["GIT_INDEX_FILE"] = index_file
        return env

    def _git(self, *args: str, input: bytes | None = None, index: str | None = None, check: bool = True,
             cwd: Path | None = None) -> str:
        cmd = ["git", "-c", "commit.gpgsign=false", "-c", "core.quotepath=off", *args]
        try:
            proc = subprocess.run(cmd, cwd=cwd or self.root, input=input, capture_output=True,
                                  env=self._env(index))
        except FileNotFoundError:
            raise GitError("git is not installed or not on PATH; install git to run the loop") from None
        if check and proc.returncode != 0:
            stderr = proc.stderr.decode(errors="replace").strip()
            raise GitError(f"git {' '.join(args)} failed ({proc.returncode}): {stderr}")
        return proc.stdout.decode(errors="surrogateescape") if proc.returncode == 0 else ""

    def _ok(self, *args: str) -> bool:
        """Whether a git query command succeeds (exit status 0)."""
        proc = subprocess.run(["git", *args], cwd=self.root, capture_output=True, env=self._env())
        return proc.returncode == 0

    def _rev(self, name: str) -> str | None:
        out = self._git("rev-parse", "-q", "--verify", f"{name}^{{commit}}", check=False).strip()
        return out or None

    def _resolve(self, commit: str) -> str:
        sha = self._rev(commit)
        if sha is None:
            raise GitError(f"{commit!r} is not a commit in {self.root}")
        return sha

    def _subtree(self, treeish: str) -> str | None:
        """The tree object of the harness dir inside `treeish`, or None when it has no such dir."""
        if not self._prefix:
            return self._git("rev-parse", "-q", "--verify", f"{treeish}^{{tree}}", check=False).strip() or None
        # "<rev>:<path>^{tree}" would read "^{tree}" as part of the path, so check the type separately
        out = self._git("rev-parse", "-q", "--verify", f"{treeish}:{self._prefix}", check=False).strip()
        if not out or self._git("cat-file", "-t", out, check=False).strip() != "tree":
            return None
        return out

    def _toplevel(self) -> Path | None:
        if not self.harness_dir.is_dir():
            raise GitError(f"harness dir {self.harness_dir} does not exist")
        out = self._git("rev-parse", "--show-toplevel", check=False, cwd=self.harness_dir).strip()
        return Path(out) if out else None

    @contextmanager
    def _temp_index(self, treeish: str | None = None) -> Iterator[str]:
        with tempfile.TemporaryDirectory(prefix="ratchet-index-") as tmp:
            index = str(Path(tmp) / "index")
            if treeish:
                self._git("read-tree", treeish, index=index)
            yield index

    def _pathspec(self) -> str:
        return self._prefix or "."

    def _snapshot_tree(self, head: str | None) -> str:
        """A tree: `head` everywhere, with the harness dir as it is on disk now (ignored files left out)."""
        with self._temp_index(head) as index:
            self._git("add", "-A", "--", self._pathspec(), *_SNAPSHOT_EXCLUDES, index=index)
            return self._git("write-tree", index=index).strip()

    def _commit_tree(self, tree: str, parents: Iterable[str], message: str) -> str:
        args = ["commit-tree", tree]
        for p in parents:
            args += ["-p", p]
        return self._git(*args, input=message.encode()).strip()

    def _update_ref(self, ref: str, new: str, old: str | None = None) -> None:
        self._git("update-ref", "-m", f"ratchet {self.run_id}", ref, new, *([old] if old is not None else []))

    # --- lifecycle -----------------------------------------------------------------------------
    def ensure_repo(self) -> str:
        """Make sure the harness is in git and the run has a seed commit; return the seed.

        A new repo gets the harness committed on its current branch. In an existing repo, a dirty
        harness is snapshotted into a commit only the run's refs point at. Calling it again (resume)
        returns the same seed."""
        top = self._toplevel()
        fresh = top is None
        if fresh:
            self._git("init", "-q", cwd=self.harness_dir)
            exclude = self.harness_dir / ".git" / "info" / "exclude"
            exclude.parent.mkdir(parents=True, exist_ok=True)
            with exclude.open("a") as f:
                f.write("\n# ratchet\n__pycache__/\n*.pyc\n.ratchet/\n")
            top = self.harness_dir
        self._set_root(top)
        seed = self._rev(self.seed_ref)
        if seed is not None:
            return seed
        if self._prefix and self._ok("check-ignore", "-q", self._prefix):
            raise GitError(f"{self.harness_dir} is ignored by git in {self.root}; "
                           "un-ignore it so its history can be kept")
        head = self._rev("HEAD")
        if fresh:
            self._git("add", "-A", "--", ".", *_SNAPSHOT_EXCLUDES)
            self._git("commit", "-q", "--no-verify", "--allow-empty", "-m", "ratchet: seed harness")
            seed = self._resolve("HEAD")
        else:
            tree = self._snapshot_tree(head)
            if head is not None and tree == self._git("rev-parse", f"{head}^{{tree}}").strip():
                seed = head
            else:
                seed = self._commit_tree(tree, [head] if head else [],
                                         f"ratchet: snapshot of the harness for run {self.run_id}")
        self._update_ref(self.seed_ref, seed, "")
        if self._rev(self.best_ref) is None:
            self._update_ref(self.best_ref, seed)
        if self._rev(self.branch_ref) is None:
            self._update_ref(self.branch_ref, seed)
        return seed

    def seed(self) -> str:
        return self._ref_or_fail(self.seed_ref)

    def best(self) -> str:
        return self._ref_or_fail(self.best_ref)

    def _ref_or_fail(self, ref: str) -> str:
        sha = self._rev(ref)
        if sha is None:
            raise GitError(f"{ref} does not exist in {self.root}; call ensure_repo() first")
        return sha

    def move_best(self, commit: str) -> None:
        """Point the run's best ref and run branch at `commit`, both or neither (one ref transaction), so a
        kill can never leave the branch behind a best ref that a resume then sees as already moved."""
        sha = self._resolve(commit)
        moves = f"start\nupdate {self.best_ref} {sha}\nupdate {self.branch_ref} {sha}\ncommit\n"
        self._git("update-ref", "-m", f"ratchet {self.run_id}", "--stdin", input=moves.encode())

    def best_is(self, commit: str) -> bool:
        """Whether both the best ref and the run branch point at `commit`."""
        sha = self._resolve(commit)
        return self._rev(self.best_ref) == sha and self._rev(self.branch_ref) == sha

    # --- candidates ----------------------------------------------------------------------------
    def _next_candidate_number(self) -> int:
        out = self._git("for-each-ref", "--format=%(refname)", f"{self.ref_base}/cand/")
        numbers = [int(r.rsplit("/", 1)[1]) for r in out.split() if r.rsplit("/", 1)[1].isdigit()]
        return max(numbers, default=0) + 1

    def commit_candidate(self, parent_commit: str, edits: dict[str, str | None], message: str,
                         number: int | str | None = None) -> str:
        """A commit on `parent_commit` with `edits` (harness path -> new text; None deletes) applied,
        built without a checkout; refs/ratchet/<run>/cand/<number> points at it."""
        parent = self._resolve(parent_commit)
        try:
            paths = {normalize_path(p, "candidate edit"): text for p, text in edits.items()}
        except EditError as e:
            raise GitError(str(e)) from None
        full = {p: f"{self._prefix}/{p}" if self._prefix else p for p in paths}
        modes: dict[str, str] = {}
        if full:
            listing = self._git("ls-tree", "-z", parent, "--", *full.values())
            for entry in filter(None, listing.split("\0")):
                meta, path = entry.split("\t", 1)
                modes[path] = meta.split()[0]
        with self._temp_index(parent) as index:
            info = []
            for rel, text in paths.items():
                path = full[rel]
                if text is None:
                    self._git("update-index", "--force-remove", "--", path, index=index)
                    continue
                sha = self._git("hash-object", "-w", "--stdin", input=text.encode()).strip()
                mode = "100755" if modes.get(path) == "100755" else "100644"
                info.append(f"{mode} {sha}\t{path}")
            if info:
                self._git("update-index", "--add", "--index-info", input=("\n".join(info) + "\n").encode(), index=index)
            tree = self._git("write-tree", index=index).strip()
        commit = self._commit_tree(tree, [parent], message or "ratchet candidate")
        self._update_ref(self.candidate_ref(number if number is not None else self._next_candidate_number()), commit)
        return commit

    def diff(self, a: str, b: str) -> str:
        """Unified diff of the harness dir from commit `a` to commit `b`, paths relative to it."""
        return self._git("diff", "--no-color", "--no-ext-diff", "--no-renames", "--src-prefix=a/", "--dst-prefix=b/",
                         *self._relative(), self._resolve(a), self._resolve(b), "--", self._pathspec())

    def changed_paths(self, a: str, b: str) -> list[str]:
        out = self._git("diff", "--name-only", "-z", "--no-renames", *self._relative(),
                        self._resolve(a), self._resolve(b), "--", self._pathspec())
        return [p for p in out.split("\0") if p]

    def _relative(self) -> list[str]:
        return [f"--relative={self._prefix}/"] if self._prefix else []

    def read_files(self, commit: str) -> dict[str, str]:
        """Every text file of the harness dir at `commit` (files that are not UTF-8 are left out)."""
        tree = self._subtree(self._resolve(commit))
        if tree is None:
            return {}
        entries = []
        for entry in filter(None, self._git("ls-tree", "-r", "-z", tree).split("\0")):
            meta, path = entry.split("\t", 1)
            mode, kind, sha = meta.split()
            if kind == "blob" and mode != "120000":
                entries.append((path, sha))
        if not entries:
            return {}
        proc = subprocess.run(["git", "cat-file", "--batch"], cwd=self.root, env=self._env(), capture_output=True,
                              input="".join(f"{sha}\n" for _, sha in entries).encode())
        if proc.returncode != 0:
            raise GitError(f"git cat-file --batch failed: {proc.stderr.decode(errors='replace').strip()}")
        files, out, pos = {}, proc.stdout, 0
        for path, _ in entries:
            header_end = out.index(b"\n", pos)
            size = int(out[pos:header_end].split()[2])
            blob = out[header_end + 1:header_end + 1 + size]
            pos = header_end + 1 + size + 1
            try:
                files[path] = blob.decode("utf-8")
            except UnicodeDecodeError:
                continue
        return files

    # --- checkouts -----------------------------------------------------------------------------
    @property
    def worktrees_dir(self) -> Path:
        return self.state_dir / "worktrees" / self.run_id

    def worktree(self, commit: str, fresh: bool = False) -> Path:
        """A directory holding the harness files of `commit` (the harness dir, not the repo root),
        under .ratchet/worktrees/<run>/<sha>; reused when it exists unless `fresh`."""
        sha = self._resolve(commit)
        dest = self.worktrees_dir / sha
        if dest.is_dir() and not fresh:
            return dest
        self.worktrees_dir.mkdir(parents=True, exist_ok=True)
        ignore = self.worktrees_dir.parent / ".gitignore"
        if not ignore.exists():  # keep checkouts out of `git status` when .ratchet sits inside a repo
            ignore.write_text("*\n")
        tmp = Path(tempfile.mkdtemp(prefix=f"{sha[:12]}.", dir=self.worktrees_dir))
        tree = self._subtree(sha)
        if tree is not None:
            with self._temp_index(tree) as index:
                self._git("checkout-index", "-a", "-f", f"--prefix={tmp}/", index=index)
        old = None
        if dest.exists():  # renamed away first: a kill while deleting must not leave a half-deleted `dest`
            old = dest.with_name(f"{sha[:12]}.old.{os.getpid()}")
            os.replace(dest, old)
        os.replace(tmp, dest)  # atomic: a half-written checkout is never reused
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)  # a leftover (after a kill) is swept by clean_worktrees
        return dest

    def clean_worktrees(self, keep: Iterable[str] = ()) -> int:
        """Remove checkouts except those of `keep` (commits); returns how many were removed."""
        if not self.worktrees_dir.is_dir():
            return 0
        kept = {self._resolve(c) for c in keep}
        removed = 0
        for d in self.worktrees_dir.iterdir():
            if d.is_dir() and d.name not in kept:
                shutil.rmtree(d)
                removed += 1
        return removed

    # --- adoption and resume -------------------------------------------------------------------
    def adopt(self, commit: str, message: str | None = None) -> str:
        """Bring `commit`'s harness onto the user's current branch (fast-forward when possible,
        else a new commit with its harness tree) and update the index and working tree to match.
        Refuses when the harness dir has been edited since the run started. Returns the branch's new commit."""
        sha = self._resolve(commit)
        branch = self._git("symbolic-ref", "-q", "HEAD", check=False).strip()
        if not branch:
            raise GitError(f"HEAD is detached in {self.root}; check out the branch that should receive the harness")
        head = self._rev("HEAD")
        current = self._snapshot_tree(head)
        current_sub = self._subtree(current)
        allowed = {self._subtree(head) if head else None, self._subtree(self.seed())}
        if current_sub not in allowed:
            raise GitError(f"{self.harness_dir} has changes made after run {self.run_id} started; "
                           "commit or stash them, then adopt again")
        if head is None or self._ok("merge-base", "--is-ancestor", head, sha):
            new = sha
        else:
            if self._subtree(head) not in self._start_subtrees():
                raise GitError(f"the harness on {branch} was changed by commits made after run {self.run_id} "
                               f"started; adopting would drop them. Merge the run instead: "
                               f"git merge {self.branch_ref.removeprefix('refs/heads/')}")
            with self._temp_index(head) as index:
                if self._prefix:
                    self._git("rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", self._prefix, index=index)
                    target = self._subtree(sha)
                    if target is not None:
                        self._git("read-tree", f"--prefix={self._prefix}/", target, index=index)
                else:
                    self._git("read-tree", sha, index=index)
                tree = self._git("write-tree", index=index).strip()
            if tree == self._git("rev-parse", f"{head}^{{tree}}").strip():
                return head
            new = self._commit_tree(tree, [head], message or f"ratchet: adopt {sha[:12]} from run {self.run_id}")
        self._update_ref(branch, new, head or "")
        self._git("restore", f"--source={new}", "--staged", "--worktree", "--", self._pathspec())
        # files that existed only untracked on disk (snapshotted into the seed) and that the candidate removed
        before = set(self._tree_paths(current_sub))
        after = set(self._tree_paths(self._subtree(new)))
        for rel in sorted(before - after):
            path = self.harness_dir / rel
            if path.is_file() or path.is_symlink():
                path.unlink()
        return new

    def _start_subtrees(self) -> set[str | None]:
        """The harness as the run found it: the seed's, and, when the seed is our snapshot of
        uncommitted files, the committed one underneath it."""
        seed = self.seed()
        found = {self._subtree(seed)}
        email = self._git("log", "-1", "--format=%ce", seed).strip()
        if email == _IDENTITY["GIT_COMMITTER_EMAIL"] and self._rev(f"{seed}^") is not None:
            found.add(self._subtree(f"{seed}^"))
        return found

    def _tree_paths(self, tree: str | None) -> list[str]:
        if tree is None:
            return []
        return [e.split("\t", 1)[1] for e in self._git("ls-tree", "-r", "-z", tree).split("\0") if e]

    def refs(self) -> dict[str, str]:
        """The run's refs, short name -> commit ('seed', 'best', 'cand/3', 'branch'); store it to resume."""
        out = self._git("for-each-ref", "--format=%(refname) %(objectname)", f"{self.ref_base}/", self.branch_ref)
        refs = {}
        for line in out.splitlines():
            name, sha = line.split()
            refs["branch" if name == self.branch_ref else name.removeprefix(f"{self.ref_base}/")] = sha
        return refs

    def verify_refs(self, expected: dict[str, str]) -> list[str]:
        """Where the repo disagrees with what the ledger recorded (ref name -> commit); empty when consistent."""
        problems = []
        for name, want in sorted(expected.items()):
            ref = self.full_ref(name)
            have = self._rev(ref)
            if have is None:
                problems.append(f"{ref} is missing (the ledger says {want[:12]})")
            elif not want or not have.startswith(want):
                problems.append(f"{ref} points at {have[:12]}, the ledger says {want[:12]}")
        return problems

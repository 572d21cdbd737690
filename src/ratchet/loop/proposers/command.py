"""Any external coding agent as the proposer: a command line (`[loop.command] argv`) run in the sandbox in a
private copy of the round's workspace; the diff of its `harness/` copy is the proposal.

    [loop.command]
    argv = ["claude", "-p", "{prompt}", "--permission-mode", "acceptEdits"]
    env = ["ANTHROPIC_API_KEY"]   # passed through by name; no other variable of yours reaches it
    network = true                # its API endpoint; false (the default): no network but loopback
    timeout_s = 900

In argv, `{prompt}` is the instruction (PROMPT below, or `prompt`), `{brief}` the brief's file name and
`{workspace}` the copy's path inside the sandbox; `python` means this interpreter. The program runs with
the workspace copy as its working directory and its HOME, and sees nothing else that is yours: no suite
data, no scorer, no ledger, no home directory, no environment variable but those named (the sandbox is
bubblewrap, required here: the rlimit fallback would show it the whole file system). `ro_paths` binds
read-only directories it needs (its own install); one that holds the project, its state dir or your home
is refused.

It finishes by exiting 0. Its rationale and hypothesis come from `PROPOSAL.md`, which it writes in the
workspace: a line `RATIONALE: ...` and a line `HYPOTHESIS: ...` (each may run on until a blank line).
Without them the rationale says which files it changed and the hypothesis is FALLBACK_HYPOTHESIS.
A run that times out, exits non-zero, changes nothing or breaks the harness (a syntax error, an invalid
params.toml, a skill without `run` or that fails to import) is a failed proposal, recorded with its
output tail. Its own model tokens are not seen by ratchet: limit them in the agent's settings.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from ratchet.config import CommandSection, ConfigError
from ratchet.globs import matches_any
from ratchet.harness.loader import HARNESS_GLOBS
from ratchet.loop.edits import changed_files
from ratchet.loop.guard import params_problems, protected_violations, syntax_problems
from ratchet.loop.proposers.base import Proposal, ProposalContext, ProposalError
from ratchet.loop.skills_check import skill_problems
from ratchet.loop.workspace import PROPOSAL_FILE, harness_copy
from ratchet.sandbox import INSIDE_WORKDIR, Sandbox, SandboxLimits

PROMPT = ("You are improving an AI agent's harness, unattended. Read BRIEF.md in the current directory and follow "
          "it: study trajectories/ and history.md, make ONE focused change to the files under harness/, then write "
          f"{PROPOSAL_FILE} with a line 'RATIONALE: ...' and a line 'HYPOTHESIS: ...'. Do not ask questions.")
FALLBACK_HYPOTHESIS = "the change raises the dev score (the command wrote no HYPOTHESIS line)"
TAIL_CHARS = 2000
_LABEL = re.compile(r"^[#*\s>-]*(RATIONALE|HYPOTHESIS)[*\s]*:[*\s]*(.*)$", re.IGNORECASE)
_PYTHONS = {"python", "python3", f"python{sys.version_info.major}.{sys.version_info.minor}"}


def read_proposal_text(text: str) -> dict[str, str]:
    """RATIONALE and HYPOTHESIS from PROPOSAL.md: each from its label to a blank line or the next label."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        m = _LABEL.match(line)
        if m:
            current = found.setdefault(m.group(1).upper(), [])
            current.append(m.group(2).strip())
        elif current is not None and line.strip():
            current.append(line.strip())
        else:
            current = None
    return {k: " ".join(v).strip()[:4000] for k, v in found.items() if " ".join(v).strip()}


def fill_argv(argv: list[str], prompt: str) -> list[str]:
    values = {"{prompt}": prompt, "{brief}": "BRIEF.md", "{workspace}": INSIDE_WORKDIR}
    out = []
    for arg in argv:
        for key, value in values.items():
            arg = arg.replace(key, value)
        out.append(arg)
    if out[0] in _PYTHONS:  # the sandbox binds this interpreter's prefix; another python may not be inside
        out[0] = sys.executable
    return out


def refused_binds(paths: list[str], workspace: Path) -> list[str]:
    """ro_paths that would show the agent the project, its state (ledger, caches) or your home."""
    state_dir = workspace.resolve().parents[2]  # <state>/workspaces/<run>/r<NNN>
    secret = [state_dir, state_dir.parent, Path.home().resolve()]
    out = []
    for raw in paths:
        p = Path(raw).expanduser().resolve()
        if any(p == s or p in s.parents for s in secret):
            out.append(f"[loop.command] ro_paths {raw!r} holds the project, its state or your home; bind only the "
                       "agent's own install directory")
        elif not p.exists():
            out.append(f"[loop.command] ro_paths {raw!r} does not exist")
    return out


def _tail(text: str) -> str:
    return text if len(text) <= TAIL_CHARS else "[...]" + text[-TAIL_CHARS:]


class CommandProposer:
    name = "command"
    uses_workspace = True

    def __init__(self, spec: CommandSection):
        self.spec = spec
        self._sandbox: Sandbox | None = None
        self.proposed = self.accepted = 0

    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            s = self.spec
            limits = SandboxLimits(memory_mb=s.memory_mb, cpu_s=int(s.timeout_s * (os.cpu_count() or 1)) + 60,
                                   max_procs=s.max_procs, file_mb=64, output_kb=256, wall_s=s.timeout_s)
            try:
                self._sandbox = Sandbox(limits, backend="bwrap", network=s.network)
            except RuntimeError as e:
                raise ConfigError(f"proposer = 'command' runs the agent under bubblewrap only: {e}") from None
        return self._sandbox

    async def propose(self, ctx: ProposalContext) -> Proposal:
        if ctx.workspace is None:
            raise ProposalError("command: the loop wrote no workspace for this round")
        if problems := refused_binds(self.spec.ro_paths, ctx.workspace):
            raise ConfigError("; ".join(problems))
        env = {n: os.environ[n] for n in self.spec.env if n in os.environ}
        missing = [n for n in self.spec.env if n not in os.environ]
        before = harness_copy(ctx.workspace)
        harvested: dict[str, Any] = {}

        def harvest(workdir: Path) -> None:  # after the program and all it started are dead
            try:
                harvested["files"] = harness_copy(workdir)
                proposal = workdir / PROPOSAL_FILE
                if proposal.is_file() and not proposal.is_symlink() and proposal.stat().st_size < 64 * 1024:
                    harvested["proposal"] = proposal.read_text(errors="replace")
            except (ValueError, OSError) as e:  # e.g. a file it made unreadable: its proposal, not the run, fails
                harvested["error"] = str(e)

        argv = fill_argv(self.spec.argv, self.spec.prompt or PROMPT)
        res = await self.sandbox().run(argv, workdir_from=ctx.workspace, env=env, wall_s=self.spec.timeout_s,
                                       ro_binds=[Path(p).expanduser() for p in self.spec.ro_paths], harvest=harvest)
        output = _tail((res.stdout.strip() + "\n" + res.stderr.strip()).strip())
        meta = {"argv": [a if "{prompt}" not in a else "{prompt}" for a in self.spec.argv], "returncode": res.returncode,
                "seconds": round(res.seconds, 2), "output_tail": output, "env_passed": sorted(env),
                "env_missing": missing, "network": self.spec.network, "workspace": str(ctx.workspace),
                "proposal_file": "proposal" in harvested}
        attempt = [{"error": "", **meta}]

        def fail(why: str) -> ProposalError:
            attempt[0]["error"] = why
            return ProposalError(f"command: {why}; its output ended: {output[-300:] or '(nothing)'}", attempt)

        if res.timed_out:
            raise fail(f"ran past timeout_s = {self.spec.timeout_s:g}s and was killed")
        if res.returncode != 0:
            raise fail(f"exited with code {res.returncode}" + (f" ({res.reason})" if res.reason else ""))
        if "error" in harvested:
            raise fail(harvested["error"])
        after_files = harvested.get("files", {})
        if "harness.py" in before:  # a harness: new files the sandbox would never load (caches, notes) are not the change
            ignored = sorted(p for p in after_files if p not in before and matches_any(p, HARNESS_GLOBS) is None)
            after_files = {p: t for p, t in after_files.items() if p not in ignored}
            meta["ignored"] = ignored
        changes = changed_files(before, after_files)
        if not changes:
            raise fail("changed nothing under harness/")
        after = {p: t for p, t in {**before, **changes}.items() if t is not None}
        problems = protected_violations(changes) + syntax_problems(changes) + params_problems(changes)
        problems += skill_problems(after, changes)
        if not problems and ctx.probe is not None:
            problems += await ctx.probe.check_skills(after, changes)
        if problems:
            raise fail("its change cannot be evaluated: " + "; ".join(problems))
        labels = read_proposal_text(harvested.get("proposal", ""))
        rationale = labels.get("RATIONALE") or (
            f"(no RATIONALE line in {PROPOSAL_FILE}) `{Path(self.spec.argv[0]).name}` changed {', '.join(sorted(changes))}")
        return Proposal(edits=changes, rationale=rationale, hypothesis=labels.get("HYPOTHESIS") or FALLBACK_HYPOTHESIS,
                        proposer=self.name, meta=meta)

    def observe(self, proposal: Proposal, accepted: bool, score: float | None) -> None:
        self.proposed += 1
        self.accepted += bool(accepted)

    def switch_strategy(self) -> None:
        pass  # an external agent reads history.md, where the streak of rejections is plain to see

    def state_dict(self) -> dict[str, Any]:
        return {"proposed": self.proposed, "accepted": self.accepted}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.proposed, self.accepted = state["proposed"], state["accepted"]

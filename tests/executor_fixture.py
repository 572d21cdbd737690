"""A project whose model is built from a file (the scripted backend), so that a Ray worker builds the same
deterministic arithmetic model the local executor uses: the fake of conftest.py, as `reply(messages, params)`."""

from pathlib import Path

from conftest import PROJECT_TOML, make_project_dir

# conftest.ArithmeticModel as a script. With a file `kill-armed` beside it, the first call in a process that
# finds no `killed` marker writes it and kills its own process: a worker dying mid-task, once.
ARITH_REPLY = r'''import os, re, signal
from pathlib import Path

HERE = Path(__file__).parent


def reply(messages, params):
    if (HERE / "kill-armed").exists():
        try:
            with open(HERE / "killed", "x") as marker:  # one process wins: exactly one kill
                marker.write(str(os.getpid()))
        except FileExistsError:
            pass
        else:
            os.kill(os.getpid(), signal.SIGKILL)
    text = messages[-1]["content"]
    m = re.search(r"(-?\d+)\s*([+\-*])\s*(-?\d+)", text)
    if not m:
        return "I do not know."
    a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
    value = {"+": a + b, "-": a - b, "*": a * b}[op]
    return str(value if params.temperature <= 0.3 else value + 1)
'''


def scripted_project(root: Path, n_tasks: int = 30, executor: str = "", loop: str = "") -> Path:
    # no cache: each executor's answers come from its own model calls, not from the other's cached ones
    toml = PROJECT_TOML.replace('name = "arith-fake"', 'name = "arith-fake"\nscript = "reply.py"\ncache = false')
    if loop:
        toml = toml.replace("[loop]\n", f"[loop]\n{loop}\n")
    toml += f"\n[executor]\n{executor}\n" if executor else ""
    root = make_project_dir(root, n_tasks=n_tasks, toml=toml)
    (root / "reply.py").write_text(ARITH_REPLY)
    return root

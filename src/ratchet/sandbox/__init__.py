"""Running untrusted code (harness programs, the python skill, HumanEval tests) in a separate process.

Every run gets resource limits (setrlimit in the child: CPU seconds, address space, processes, file
size, no core dumps), a wall timeout that kills the whole process group, a fresh private work dir that
is removed afterwards, an environment built from scratch (the parent's variables, and so its secrets,
never reach the child) and capped output (stdout/stderr are truncated while they are read, so a program
that prints gigabytes cannot exhaust the parent's memory).

Two backends:

- ``bwrap`` (bubblewrap; chosen by ``auto`` when a probe run works): new pid, net, ipc, uts (and user,
  when not root) namespaces, so there is no network but loopback (unless ``network=True``, which only
  ``[loop.command] network = true`` asks for: the host's network) and nothing outlives the run; an empty
  root file system holding only read-only binds of what Python needs (``/usr``, the ``/lib*`` and
  ``/bin`` links, the loader cache, the interpreter's prefix) plus the caller's explicit read-only
  binds, the work dir at ``/sandbox`` and a small private ``/tmp``; packages that hold a suite's gold
  answers (``GOLD_PACKAGES``) are masked by an empty tmpfs. When the parent is root, the child
  also drops to a fresh unprivileged uid (``setpriv``) with no capabilities and ``no_new_privs``: root
  is exempt from ``RLIMIT_NPROC``, so without the drop a fork bomb would not be contained. A non-root
  parent (a box inside a research trial's box) keeps its uid, whose processes all count against the
  limit, so there the limit is what that uid already runs plus room for several boxes (``_nproc_limit``).
- ``rlimit`` (fallback, no bubblewrap): the same limits, a new session, a cleared environment and the
  work dir as cwd, plus a best-effort network namespace. It is weaker: the program sees the whole file
  system with the parent's permissions, a process that calls ``setsid`` escapes the final group kill,
  the network is only cut where the kernel lets us create a namespace, and when the parent runs as root
  the process limit does not apply. Use it only for code you would run anyway.

Exit codes follow the ``subprocess`` convention: negative means killed by that signal (bubblewrap
reports a signal death as 128 + signal; it is mapped back).
"""

from ratchet.sandbox.box import PIPE_LIMIT, Sandbox, SandboxProcess
from ratchet.sandbox.command import (
    BWRAP,
    GOLD_PACKAGES,
    INSIDE_WORKDIR,
    NETWORK_ETC,
    SandboxLimits,
    SandboxResult,
    base_env,
    bwrap_argv,
    describe_end,
    gold_package_dirs,
    gpu_device_nodes,
    python_argv,
    python_roots,
)
from ratchet.sandbox.host import bwrap_works

__all__ = ["BWRAP", "GOLD_PACKAGES", "INSIDE_WORKDIR", "NETWORK_ETC", "PIPE_LIMIT", "Sandbox", "SandboxLimits",
           "SandboxProcess", "SandboxResult", "base_env", "bwrap_argv", "bwrap_works", "describe_end",
           "gold_package_dirs", "gpu_device_nodes", "python_argv", "python_roots"]

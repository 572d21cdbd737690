"""A reasoning-gym dataset's entries, the same in every process.

Some reasoning-gym generators draw from a `set` (isomorphic_strings: `rng.choice(list(self.letters))`),
whose order follows Python's per-process string hashing, so the same `size` and `seed` give other tasks in
each process, and a run could not resume or unseal its test split. The entries are therefore generated in a
child interpreter with `PYTHONHASHSEED=0` (or here, when this interpreter already hashes that way) and kept
in the cache (`$RATCHET_CACHE/suites/reasoning_gym/`), so only the first load of a suite pays for the child.

Datasets that never depended on the hash seed give exactly the entries they gave before. The suite's
fingerprint is taken over the entries, so a cache file changed under a run is caught like any data change.

Run as `python -m ratchet.suites.reasoning_gym_entries OUT` with the request as JSON on stdin.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

from ratchet.atomic_file import write_atomically

# bump when what the child writes changes, so older cache files are not read
_FORMAT = 1


def dataset_entries(built: Any, dataset: str, size: int, seed: int, config: dict[str, Any]) -> list[dict[str, Any]]:
    """The `size` entries of a reasoning-gym dataset as a `PYTHONHASHSEED=0` interpreter generates them.
    `built`: that dataset as this process made it, read directly when this process hashes like the child."""
    if _hashes_like_the_child():
        return _entries_of(built, size)
    request = {"dataset": dataset, "size": size, "seed": seed, "config": config}
    path = _cache_path(request)
    try:
        return _read(path)
    except (OSError, EOFError, pickle.UnpicklingError):
        pass
    _generate_in_child(request, path)
    return _read(path)


def _hashes_like_the_child() -> bool:
    return sys.flags.hash_randomization == 0  # PYTHONHASHSEED=0


def _cache_path(request: dict[str, Any]) -> Path:
    from ratchet.models.gguf import cache_root

    key = {**request, "reasoning_gym": version("reasoning-gym"), "python": sys.version_info[:2], "format": _FORMAT}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=repr).encode()).hexdigest()[:24]
    return cache_root() / "suites" / "reasoning_gym" / f"{request['dataset']}-{digest}.pickle"


def _read(path: Path) -> list[dict[str, Any]]:
    with path.open("rb") as f:
        entries = pickle.load(f)
    if not isinstance(entries, list):
        raise pickle.UnpicklingError(f"{path} does not hold a list of entries")
    return entries


def _generate_in_child(request: dict[str, Any], path: Path) -> None:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        [sys.executable, "-m", __name__, str(path)],
        input=json.dumps(request), capture_output=True, text=True, env=env, check=False,
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-5:]
        raise RuntimeError(
            f"generating reasoning-gym dataset {request['dataset']!r} in a child process failed "
            f"(exit {done.returncode}): " + " | ".join(tail)
        )


def _generate(request: dict[str, Any]) -> list[dict[str, Any]]:
    import reasoning_gym

    data = reasoning_gym.create_dataset(
        request["dataset"], size=request["size"], seed=request["seed"], **request["config"]
    )
    return _entries_of(data, request["size"])


def _entries_of(data: Any, size: int) -> list[dict[str, Any]]:
    return [data[index] for index in range(size)]


if __name__ == "__main__":
    if sys.flags.hash_randomization != 0:
        sys.exit("run with PYTHONHASHSEED=0: the entries must not depend on this process's string hashing")
    entries = _generate(json.loads(sys.stdin.read()))
    write_atomically(Path(sys.argv[1]), pickle.dumps(entries, protocol=pickle.HIGHEST_PROTOCOL))

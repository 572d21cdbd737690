"""The suite protocol and the stable split assignment shared by every adapter."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

from ratchet.types import Score, Task

Split = Literal["train", "dev", "holdout", "test"]
SPLITS: tuple[Split, ...] = ("train", "dev", "holdout", "test")


@runtime_checkable
class Suite(Protocol):
    """Tasks plus a verifier. Gold answers live inside the suite and never reach harness code."""

    name: str

    def tasks(self) -> Sequence[Task]: ...

    async def score(self, task: Task, answer: str | None) -> Score: ...

    def gold(self, task_id: str) -> str: ...  # for the flywheel's contamination check and STaR hints

    def fingerprint(self) -> str: ...  # hash of data + scorer code; checked at every evaluation


def split_of(task_id: str, fractions: dict[str, float], salt: str = "ratchet") -> Split:
    """Assign a task to a split by a stable hash of its id, so splits never change between runs."""
    digest = hashlib.sha256(f"{salt}:{task_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    acc = 0.0
    for name in SPLITS:
        acc += fractions.get(name, 0.0)
        if u < acc:
            return name
    return SPLITS[-1]

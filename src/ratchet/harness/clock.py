"""The episode's own wall time: what `[eval] timeout_s` limits.

The clock stops while the episode waits on the model. Those waits are the engine's time, not the
harness's: a queue behind other episodes' requests on a busy server, or a vLLM server still starting,
once timed out every episode of a round without the harness doing anything wrong. A model call is
bounded by the model client's own timeout instead, which ends the episode as "model unavailable".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator


class EpisodeClock:
    """Counts wall time while no model call of the episode is outstanding; `run_out()` returns at the limit."""

    def __init__(self, limit_s: float, now: Callable[[], float] = time.monotonic) -> None:
        self.limit_s, self._now = limit_s, now
        self._spent = 0.0
        self._since = now()
        self._waits = 0  # model calls outstanding; a harness may have several at once
        self._running = asyncio.Event()
        self._running.set()

    def spent(self) -> float:
        """Seconds counted so far."""
        return self._spent + (self._now() - self._since if self._waits == 0 else 0.0)

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """`with clock.waiting(): await model...` stops the clock for the call."""
        if self._waits == 0:
            self._spent += self._now() - self._since
            self._running.clear()
        self._waits += 1
        try:
            yield
        finally:
            self._waits -= 1
            if self._waits == 0:
                self._since = self._now()
                self._running.set()

    async def run_out(self) -> None:
        """Return once `limit_s` seconds have been counted."""
        while True:
            await self._running.wait()
            left = self.limit_s - self.spent()
            if left <= 0:
                return
            await asyncio.sleep(left)  # a model call may have stopped the clock meanwhile: look again


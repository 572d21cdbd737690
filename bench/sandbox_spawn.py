"""What a box costs its parent: limits set by prlimit's exec (the default) vs a Python preexec_fn, in one run.

    python bench/sandbox_spawn.py [--boxes 40] [--concurrency 8]

Every episode is a box, so its start is paid once per rollout. The parent holds the embedded model, as ratchet
does during a run: with a preexec_fn, Python must fork (copy the page tables of every loaded tensor) and run
Python in the child; without one it uses vfork. Prints wall ms and parent CPU ms per box for both, and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import ratchet.sandbox.box as box
from ratchet.models.local import LocalModel
from ratchet.sandbox import Sandbox


async def boxes(n: int, concurrency: int) -> tuple[float, float]:
    sandbox, gate = Sandbox(), asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            result = await sandbox.run([sys.executable, "-S", "-c", "pass"])
            assert result.returncode == 0, result.stderr

    await one()  # the bwrap probe and first-run costs stay out of the figures
    wall, cpu = time.monotonic(), time.process_time()
    await asyncio.gather(*(one() for _ in range(n)))
    return (time.monotonic() - wall) / n * 1000, (time.process_time() - cpu) / n * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boxes", type=int, default=40)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    model = LocalModel()  # resident, as in a run
    if box.PRLIMIT is None:
        sys.exit("prlimit (util-linux) is not installed: there is nothing to compare")
    fast = asyncio.run(boxes(args.boxes, args.concurrency))
    prlimit, box.PRLIMIT = box.PRLIMIT, None  # the baseline: the limits in a preexec_fn
    try:
        slow = asyncio.run(boxes(args.boxes, args.concurrency))
    finally:
        box.PRLIMIT = prlimit
    print(f"model resident: {model.name}; {args.boxes} boxes, {args.concurrency} at a time")
    print("| limits set by | wall ms/box | parent CPU ms/box |")
    print("|---|---|---|")
    print(f"| preexec_fn (baseline) | {slow[0]:.1f} | {slow[1]:.1f} |")
    print(f"| prlimit | {fast[0]:.1f} | {fast[1]:.1f} |")
    print(f"ratio (baseline / prlimit): wall {slow[0] / fast[0]:.2f}x, parent CPU {slow[1] / fast[1]:.2f}x")


if __name__ == "__main__":
    main()

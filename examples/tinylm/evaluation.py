"""The fixed part of tinylm: the corpus, its split, and the validation metric. Not editable by the
loop (see ratchet.toml), so a candidate cannot move the goalposts by changing how it is scored.

The corpus is the interpreter's own standard library (*.py files): no download. Files are assigned
to train / dev-validation / holdout-validation by a stable hash of their name.
"""

from __future__ import annotations

import json
import math
import sysconfig
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F

EVAL_BYTES = 16_384  # bytes scored in validation, the same for every knob setting
TRAIN_FLOPS = 2.5e11  # the fixed compute budget of one trial's training (~3x the seed recipe's)


def corpus() -> dict[str, bytes]:
    parts: dict[str, list[bytes]] = {"train": [], "dev": [], "holdout": []}
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        bucket = zlib.crc32(path.name.encode()) % 10
        split = "dev" if bucket == 8 else "holdout" if bucket == 9 else "train"
        parts[split].append(path.read_bytes())
    return {k: b"\n".join(v) for k, v in parts.items()}


def flops_per_step(width: int, depth: int, context: int, batch: int) -> float:
    """Training FLOPs of one optimiser step (forward + backward ~ 6 x multiply-adds per token)."""
    per_token = depth * 12 * width * width + 2 * 256 * width + depth * 2 * context * width
    return 6.0 * batch * context * per_token


def steps_within_budget(steps: int, width: int, depth: int, context: int, batch: int) -> int:
    """The requested steps, capped so that training fits TRAIN_FLOPS: a bigger model gets fewer steps."""
    return max(1, min(steps, int(TRAIN_FLOPS // flops_per_step(width, depth, context, batch))))


def as_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).long()


@torch.no_grad()
def bits_per_byte(model: torch.nn.Module, data: torch.Tensor, context: int) -> float:
    """Mean next-byte loss over the first EVAL_BYTES bytes, in bits; each byte is predicted once,
    from the bytes before it in its window of `context` bytes. `model(idx)` returns logits over 256 bytes."""
    model.eval()
    n = min(EVAL_BYTES, len(data) - 1) // context * context
    x = data[:n].view(-1, context)
    y = data[1:n + 1].view(-1, context)
    loss = sum(F.cross_entropy(model(xb).flatten(0, 1), yb.flatten(), reduction="sum").item()
               for xb, yb in zip(x.split(64), y.split(64)))
    return loss / n / math.log(2)


def report(bpb: float, **extra: object) -> None:
    print(json.dumps({"val_bpb": round(bpb, 5), **extra}), flush=True)

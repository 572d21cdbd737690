"""A byte-level transformer language model trained on the Python standard library's own source.

Reads its knobs from params.toml (the `value` of each table), trains for `steps` steps on CPU,
capped by the fixed compute budget in evaluation.py (a bigger model gets fewer steps), and prints
validation bits per byte as a JSON line, {"val_bpb": ...}, via evaluation.py (the fixed corpus and
metric). Environment (set by `ratchet research`): RATCHET_SEED seeds the
initialisation and the batch order; RATCHET_SPLIT=holdout scores the holdout-validation text.
"""

from __future__ import annotations

import math
import os
import time
import tomllib
import zlib
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from evaluation import as_tensor, bits_per_byte, corpus, report, steps_within_budget

TRAIN_BYTES = 1_500_000  # cap on training text


def knobs(path: str = "params.toml") -> dict:
    return {k: v["value"] for k, v in tomllib.loads(Path(path).read_text()).items() if isinstance(v, dict) and "value" in v}


class Block(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, c)
        x = x + self.proj(y)
        return x + self.mlp(self.ln2(x))


class TinyLM(nn.Module):
    def __init__(self, width: int, depth: int, context: int):
        super().__init__()
        self.tok, self.pos = nn.Embedding(256, width), nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, max(1, width // 32)) for _ in range(depth))
        self.ln, self.head = nn.LayerNorm(width), nn.Linear(width, 256)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


def batches(data: torch.Tensor, context: int, batch: int, gen: torch.Generator):
    while True:
        starts = torch.randint(0, len(data) - context - 1, (batch,), generator=gen)
        yield (torch.stack([data[s:s + context] for s in starts]),
               torch.stack([data[s + 1:s + context + 1] for s in starts]))


def lr_factor(i: int, steps: int) -> float:
    """Linear warmup over the first 10% of steps, then cosine decay to 10% of the peak."""
    warmup = max(1, steps // 10)
    return min(1.0, (i + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * min(i, steps) / steps)))


def main() -> None:
    # one thread: small models gain nothing from more, and on a busy machine threads thrash
    torch.set_num_threads(int(os.environ.get("TINYLM_THREADS", "1")))
    k = knobs()
    seed = int(os.environ.get("RATCHET_SEED", "0"))
    split = os.environ.get("RATCHET_SPLIT", "dev")
    salt = zlib.crc32(str(k.get("shuffle_salt", "")).encode())  # changes the sample, not the expectation
    torch.manual_seed(seed)
    text = corpus()
    train = as_tensor(text["train"][:TRAIN_BYTES])
    val = as_tensor(text["holdout" if split == "holdout" else "dev"])
    width, depth, context, batch = int(k["width"]), int(k["depth"]), int(k["context"]), int(k["batch"])
    steps = steps_within_budget(int(k["steps"]), width, depth, context, batch)
    model = TinyLM(width, depth, context)
    opt = torch.optim.AdamW(model.parameters(), lr=k["lr"], weight_decay=0.01, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: lr_factor(i, steps))
    gen = torch.Generator().manual_seed(seed * 1_000_003 + salt)
    start = time.time()
    model.train()
    for i, (x, y) in zip(range(steps), batches(train, context, batch, gen)):
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if i % 50 == 0 or i == steps - 1:
            print(f"step {i} loss {loss.item():.4f}", flush=True)
    report(bits_per_byte(model, val, context), split=split, seed=seed, steps=steps, train_seconds=round(time.time() - start, 2),
           params=sum(p.numel() for p in model.parameters()))


if __name__ == "__main__":
    main()

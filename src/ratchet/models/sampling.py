"""Choosing each row's next token in a decode batch: penalties, temperature, top-k, top-p, one generator per row.

Split from batching.py (which queues and runs the batches) because it is the one part that follows the
sampling parameters; the semantics are those of vLLM and the OpenAI API, so a harness knob means the same
thing on every backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ratchet.models.batching import RowRequest

_NO_PENALTIES = (0.0, 0.0, 1.0)


class RowSampler:
    """Greedy or temperature/top-k/top-p sampling after the repetition penalties, vectorised over rows where
    it can be, with one generator per row, so a row's sample never depends on the rows beside it.

    The order is vLLM's: penalties on the logits (frequency and presence over the output so far, repetition
    over prompt and output), then temperature, then top-k, then top-p. Greedy rows take the argmax of the
    penalised logits. Rows are numbered in the order they were added; rows that join a running batch are
    added later.
    """

    def __init__(self, rows: Sequence[RowRequest], device: torch.device):
        self.device = device
        self.temperature: list[float] = []
        self.top_p: list[float] = []
        self.top_k: list[int] = []
        self.penalties: list[tuple[float, float, float]] = []
        self.prompts: list[tuple[int, ...]] = []
        self.generators: list[torch.Generator | None] = []
        self.add(rows)

    def add(self, rows: Sequence[RowRequest]) -> None:
        for r in rows:
            self.temperature.append(r.temperature)
            self.top_p.append(r.top_p)
            self.top_k.append(r.top_k)
            self.penalties.append(r.penalties)
            self.prompts.append(r.prompt_ids)
            if r.temperature > 0:
                g = torch.Generator()  # on CPU: one uniform draw per step is all it makes
                g.manual_seed(r.seed)
                self.generators.append(g)
            else:
                self.generators.append(None)

    def penalised(self, logits: torch.Tensor, active: Sequence[int],
                  generated: Sequence[Sequence[int]] | None) -> torch.Tensor:
        """`logits` with each active row's penalties applied; `generated[i]`: row i's output tokens so far."""
        rows = [j for j, i in enumerate(active) if self.penalties[i] != _NO_PENALTIES]
        if not rows:
            return logits
        logits = logits.clone()
        for j in rows:
            i = active[j]
            frequency, presence, repetition = self.penalties[i]
            out = list(generated[i]) if generated is not None else []
            row = logits[j]
            if repetition != 1.0:
                vocab = row.shape[0]  # ids past the logits (a tokenizer's added tokens) have nothing to penalise
                seen = torch.tensor(sorted(t for t in set(self.prompts[i]) | set(out) if 0 <= t < vocab), dtype=torch.long,
                                    device=row.device)
                values = row[seen]
                row[seen] = torch.where(values > 0, values / repetition, values * repetition)
            if out and (frequency or presence):
                counts = torch.bincount(torch.tensor(out, device=row.device), minlength=row.shape[0])[: row.shape[0]]
                row -= frequency * counts.to(row.dtype) + presence * (counts > 0).to(row.dtype)
        return logits

    def sample(self, logits: torch.Tensor, active: Sequence[int],
               generated: Sequence[Sequence[int]] | None = None) -> torch.Tensor:
        """Next token for each active row; `active[j]` is the row number of logits row j."""
        logits = self.penalised(logits, active, generated)
        tokens = logits.argmax(dim=-1)
        sampled = [j for j, i in enumerate(active) if self.generators[i] is not None]
        if not sampled:
            return tokens
        originals = [active[j] for j in sampled]
        sel = torch.tensor(sampled, device=logits.device)
        temps = torch.tensor([self.temperature[i] for i in originals], device=logits.device).unsqueeze(-1)
        scaled = logits.index_select(0, sel) / temps
        vocab = scaled.shape[-1]
        for row, i in enumerate(originals):
            if 0 < self.top_k[i] < vocab:  # only the k likeliest tokens stay (ties with the k-th stay too)
                kth = scaled[row].topk(self.top_k[i]).values[-1]
                scaled[row] = scaled[row].masked_fill(scaled[row] < kth, float("-inf"))
        probs = torch.softmax(scaled, dim=-1)
        uniforms = torch.stack([torch.rand((), generator=self.generators[i]) for i in originals]).to(logits.device)
        top_p = torch.tensor([self.top_p[i] for i in originals], device=logits.device)
        nucleus = top_p < 1.0
        choice = torch.empty(len(sampled), dtype=torch.long, device=logits.device)
        if (~nucleus).any():  # plain sampling needs no sort: invert the CDF in vocabulary order
            idx = (~nucleus).nonzero().squeeze(-1)
            choice[idx] = _inverse_cdf(probs[idx], uniforms[idx])
        if nucleus.any():
            idx = nucleus.nonzero().squeeze(-1)
            sorted_p, order = probs[idx].sort(dim=-1, descending=True)
            outside = (sorted_p.cumsum(-1) - sorted_p) >= top_p[idx].unsqueeze(-1)  # the top token always stays
            picked = _inverse_cdf(sorted_p.masked_fill(outside, 0.0), uniforms[idx])
            choice[idx] = order.gather(-1, picked.unsqueeze(-1)).squeeze(-1)
        tokens[sel] = choice
        return tokens


def _inverse_cdf(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    cdf = probs.cumsum(dim=-1)
    targets = (uniforms * cdf[:, -1]).unsqueeze(-1)
    # right=True: a token whose probability is zero (outside the nucleus) can never be the first cdf > target
    return torch.searchsorted(cdf, targets, right=True).squeeze(-1).clamp(max=probs.shape[-1] - 1)

"""Dynamic batching for a local decoder: many concurrent callers, one forward pass per step.

Callers (asyncio tasks) submit rows to a queue; a single worker thread takes everything waiting (up to
`max_batch` rows), left-pads it, prefills once and runs one decode loop over the KV cache. Each row keeps
its own sampling parameters and its own random generator, so a row's sample does not depend on which
other rows share its batch. A prompt prefix shared by all rows (a harness's system prompt) is computed
once. Finished rows are dropped from the batch, so they stop costing compute.

Nothing here knows about transformers: the model side is the small `StepModel` protocol (local.py).
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from ratchet.models.base import ModelError


@dataclass(frozen=True)
class RowRequest:
    """One sequence to generate: a tokenised prompt and how to sample its continuation."""

    prompt_ids: tuple[int, ...]
    max_tokens: int
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0


@dataclass(frozen=True)
class RowResult:
    text: str
    completion_tokens: int


class StepModel(Protocol):
    """What the decode loop needs from a model: prefill, one step, row selection, detokenisation."""

    device: torch.device
    pad_id: int
    eos_ids: frozenset[int]

    def prefill(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, state: Any
    ) -> tuple[torch.Tensor, Any]:
        """Run prompt tokens (after `state`, or from scratch when None); last-position float32 logits [B, vocab]."""
        ...

    def step(
        self, tokens: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, state: Any
    ) -> tuple[torch.Tensor, Any]: ...

    def repeat_rows(self, state: Any, times: int) -> Any:
        """A one-row KV state copied to `times` rows."""
        ...

    def select_rows(self, state: Any, rows: torch.Tensor) -> Any:
        """The KV state restricted to `rows` (indices into the current batch)."""
        ...

    def detokenize(self, ids: Sequence[int]) -> str: ...


# ---------------------------------------------------------------- sampling


class RowSampler:
    """Greedy or temperature/top-p sampling, vectorised over rows, with one generator per row."""

    def __init__(self, rows: Sequence[RowRequest], device: torch.device):
        self.temperature = torch.tensor([r.temperature for r in rows], dtype=torch.float32, device=device)
        self.top_p = torch.tensor([r.top_p for r in rows], dtype=torch.float32, device=device)
        self.generators: list[torch.Generator | None] = []
        for r in rows:
            if r.temperature > 0:
                g = torch.Generator()  # on CPU: one uniform draw per step is all it makes
                g.manual_seed(r.seed)
                self.generators.append(g)
            else:
                self.generators.append(None)

    def sample(self, logits: torch.Tensor, active: list[int]) -> torch.Tensor:
        """Next token for each active row; `active[j]` is the original row index of logits row j."""
        tokens = logits.argmax(dim=-1)
        sampled = [j for j, i in enumerate(active) if self.generators[i] is not None]
        if not sampled:
            return tokens
        originals = [active[j] for j in sampled]
        sel = torch.tensor(sampled, device=logits.device)
        temps = self.temperature[originals].unsqueeze(-1)
        probs = torch.softmax(logits.index_select(0, sel) / temps, dim=-1)
        uniforms = torch.stack([torch.rand((), generator=self.generators[i]) for i in originals]).to(logits.device)
        top_p = self.top_p[originals]
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


# ---------------------------------------------------------------- one batch


# finished rows leave the KV state once they are at least 1/PRUNE_FRACTION of it
PRUNE_FRACTION = 8


class _StopWatch:
    """Detects stop strings by decoding only a short tail of each row's tokens, not the whole text."""

    def __init__(self, stop: tuple[str, ...]):
        self.stop = stop
        self.window = max((len(s) for s in stop), default=0) + 2  # tokens: each yields >= 1 char, plus joins

    def hit(self, model: StepModel, ids: list[int]) -> bool:
        if not self.stop:
            return False
        tail = model.detokenize(ids[-self.window :])
        return any(s in tail for s in self.stop)


def _final_text(model: StepModel, ids: list[int], stop: tuple[str, ...]) -> str:
    text = model.detokenize(ids)
    cuts = [pos for pos in (text.find(s) for s in stop) if pos >= 0]
    return text[: min(cuts)] if cuts else text


# a shared prefix shorter than this is not worth a separate forward pass
MIN_SHARED_PREFIX = 8


def shared_prefix_len(rows: Sequence[RowRequest]) -> int:
    """Tokens every prompt starts with (a system prompt, few-shot examples), leaving each row >= 1 token."""
    if len(rows) < 2:
        return 0
    first = rows[0].prompt_ids
    limit = min(len(r.prompt_ids) for r in rows) - 1
    n = 0
    while n < limit and all(r.prompt_ids[n] == first[n] for r in rows):
        n += 1
    return n if n >= MIN_SHARED_PREFIX else 0


@torch.inference_mode()
def decode_batch(model: StepModel, rows: Sequence[RowRequest]) -> list[RowResult]:
    """Generate every row in one batch; the KV state holds [shared prefix][left padding][own prompt][output]."""
    device = model.device
    n_rows = len(rows)
    prefix = shared_prefix_len(rows)
    suffix_len = max(len(r.prompt_ids) - prefix for r in rows)
    prompt_len = prefix + suffix_len
    total_len = prompt_len + max(r.max_tokens for r in rows)
    suffix_ids = torch.full((n_rows, suffix_len), model.pad_id, dtype=torch.long)
    # allocated once for the whole batch; step k uses the first prompt_len + k columns
    mask = torch.zeros((n_rows, total_len), dtype=torch.long)
    mask[:, :prefix] = 1
    for i, r in enumerate(rows):
        own = r.prompt_ids[prefix:]
        suffix_ids[i, suffix_len - len(own) :] = torch.tensor(own, dtype=torch.long)
        mask[i, prompt_len - len(own) : prompt_len] = 1
    suffix_ids, mask = suffix_ids.to(device), mask.to(device)
    positions = (mask[:, :prompt_len].cumsum(-1) - 1).clamp(min=0)
    next_pos = mask[:, :prompt_len].sum(-1, keepdim=True)

    state = None
    if prefix:  # compute the shared prefix once, then give every row its own copy of its KV
        prefix_ids = torch.tensor([rows[0].prompt_ids[:prefix]], dtype=torch.long, device=device)
        _, state = model.prefill(prefix_ids, mask[:1, :prefix], positions[:1, :prefix], None)
        state = model.repeat_rows(state, n_rows)
    logits, state = model.prefill(suffix_ids, mask[:, :prompt_len], positions[:, prefix:], state)

    sampler = RowSampler(rows, device)
    watches = [_StopWatch(r.stop) for r in rows]
    generated: list[list[int]] = [[] for _ in rows]
    done = [False] * n_rows
    present = list(range(n_rows))  # original index of each row in the KV state, in order
    length = prompt_len
    while True:
        tokens = sampler.sample(logits, present)
        for i, tok in zip(present, tokens.tolist()):
            if done[i]:
                continue
            if tok in model.eos_ids:
                done[i] = True
                continue
            generated[i].append(tok)
            done[i] = len(generated[i]) >= rows[i].max_tokens or watches[i].hit(model, generated[i])
        live = [j for j, i in enumerate(present) if not done[i]]
        if not live:
            break
        # dropping rows copies the whole KV state, so wait until enough rows have finished to pay for it
        if len(present) - len(live) >= max(1, len(present) // PRUNE_FRACTION):
            sel = torch.tensor(live, device=device)
            state = model.select_rows(state, sel)
            tokens, mask, next_pos = tokens[sel], mask[sel], next_pos[sel]
            present = [present[j] for j in live]
        mask[:, length] = 1
        length += 1
        logits, state = model.step(tokens.unsqueeze(-1), mask[:, :length], next_pos, state)
        next_pos = next_pos + 1
    return [RowResult(_final_text(model, ids, r.stop), len(ids)) for ids, r in zip(generated, rows)]


# ---------------------------------------------------------------- the queue


@dataclass(eq=False)
class _Job:
    rows: list[RowRequest]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[RowResult]]
    results: list[RowResult | None] = field(default_factory=list)
    remaining: int = 0
    failed: bool = False

    def __post_init__(self) -> None:
        self.results = [None] * len(self.rows)
        self.remaining = len(self.rows)

    def resolve(self) -> None:
        self.loop.call_soon_threadsafe(_set_result, self.future, list(self.results))

    def fail(self, error: BaseException) -> None:
        self.failed = True
        self.loop.call_soon_threadsafe(_set_exception, self.future, error)


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():  # the caller may have been cancelled meanwhile
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


class DynamicBatcher:
    """A queue of rows served by one worker thread that runs `run_batch` on up to `max_batch` rows at a time.

    `linger_s`: after the first row arrives, wait until no new row has come for this long (at most
    `max_linger_s`), so that callers started together land in one batch.
    """

    def __init__(
        self,
        run_batch: Callable[[list[RowRequest]], list[RowResult]],
        max_batch: int = 32,
        linger_s: float = 0.005,
        max_linger_s: float = 0.05,
        name: str = "ratchet-batcher",
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._run_batch = run_batch
        self.max_batch = max_batch
        self.linger_s = linger_s
        self.max_linger_s = max_linger_s
        self._pending: collections.deque[tuple[_Job, int]] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self.batch_sizes: list[int] = []  # rows per batch run, for benchmarks and tests
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    async def submit(self, rows: Sequence[RowRequest]) -> list[RowResult]:
        if not rows:
            return []
        loop = asyncio.get_running_loop()
        job = _Job(list(rows), loop, loop.create_future())
        with self._cond:
            if self._closed:
                raise ModelError("the local model was closed; build a new one")
            self._pending.extend((job, k) for k in range(len(rows)))
            self._cond.notify()
        return await job.future

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _take(self) -> list[tuple[_Job, int]] | None:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if self._closed:
                for job in {job for job, _ in self._pending}:
                    job.fail(ModelError("the local model was closed before this call finished"))
                self._pending.clear()
                return None
            deadline = time.monotonic() + self.max_linger_s
            seen = len(self._pending)
            while seen < self.max_batch and time.monotonic() < deadline:
                self._cond.wait(self.linger_s)
                if len(self._pending) == seen or self._closed:
                    break
                seen = len(self._pending)
            taken: list[tuple[_Job, int]] = []
            while self._pending and len(taken) < self.max_batch:
                job, k = self._pending.popleft()
                if not (job.failed or job.future.cancelled()):
                    taken.append((job, k))
            return taken

    def _work(self) -> None:
        while (taken := self._take()) is not None:
            if not taken:
                continue
            self.batch_sizes.append(len(taken))
            try:
                results = self._run_batch([job.rows[k] for job, k in taken])
            except Exception as e:  # the callers see it; the worker lives on for the next batch
                for job in {job for job, _ in taken}:
                    if not job.failed:
                        job.fail(ModelError(f"local generation failed: {type(e).__name__}: {e}"))
                continue
            for (job, k), result in zip(taken, results):
                job.results[k] = result
                job.remaining -= 1
                if job.remaining == 0 and not job.failed:
                    job.resolve()

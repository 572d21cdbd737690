"""Dynamic batching for a local decoder: many concurrent callers, one forward pass per step.

Callers (asyncio tasks) submit rows to a queue; a single worker thread takes everything waiting (up to
`max_batch` rows), left-pads it, prefills once and runs one decode loop over the KV cache. Rows that
arrive while it runs join it between steps (continuous batching), and a caller gets its answer as soon as
its rows end. Each row keeps its own sampling parameters and its own random generator, so a row's sample
does not depend on which other rows share its batch. A prompt prefix shared by all rows (a harness's
system prompt) is computed once. Finished rows are dropped from the batch, so they stop costing compute.

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
from ratchet.models.sampling import RowSampler


@dataclass(frozen=True)
class RowRequest:
    """One sequence to generate: a tokenised prompt and how to sample its continuation."""

    prompt_ids: tuple[int, ...]
    max_tokens: int
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0
    top_k: int = 0  # 0 = off
    frequency_penalty: float = 0.0  # OpenAI semantics: minus this times the token's count in the output so far
    presence_penalty: float = 0.0  # minus this once the token is in the output
    repetition_penalty: float = 1.0  # transformers/vLLM semantics, over prompt and output; 1 = off

    @property
    def penalties(self) -> tuple[float, float, float]:
        return self.frequency_penalty, self.presence_penalty, self.repetition_penalty


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

    def can_join(self, state: Any) -> bool:
        """Whether `join_rows` works on this state (a plain KV cache; not a sliding window or a recurrent state)."""
        ...

    def join_rows(self, state: Any, other: Any) -> Any:
        """One state with the rows of `state`, then those of `other`, the shorter left-padded to the longer."""
        ...

    def detokenize(self, ids: Sequence[int]) -> str: ...


# ---------------------------------------------------------------- one decode run


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


def left_pad(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    missing = width - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)


def _rows(t: torch.Tensor, index: list[int]) -> torch.Tensor:
    return t[torch.tensor(index, dtype=torch.long, device=t.device)]


@dataclass
class _KVBatch:
    """Rows in the KV state: [shared prefix][left padding][own prompt][output], one mask column per position."""

    rows: list[int]  # row number of each KV row, in order
    state: Any
    mask: torch.Tensor  # [B, length]: 1 where a row has a real token
    next_pos: torch.Tensor  # [B, 1]: each row's next position id (padding is not counted)
    logits: torch.Tensor  # [B, vocab]: for the next token

    def select(self, model: StepModel, keep: list[int]) -> _KVBatch:
        """Only the KV rows at positions `keep`; copies the state, so done only when it pays."""
        sel = torch.tensor(keep, dtype=torch.long, device=self.mask.device)
        return _KVBatch([self.rows[j] for j in keep], model.select_rows(self.state, sel), self.mask[sel],
                        self.next_pos[sel], self.logits[sel])

    def join(self, model: StepModel, other: _KVBatch) -> _KVBatch:
        """Both batches' rows in one; the shorter side is left-padded (masked) to the longer length."""
        width = max(self.mask.shape[1], other.mask.shape[1])
        mask = torch.cat([left_pad(self.mask, width, 1), left_pad(other.mask, width, 1)])
        return _KVBatch(self.rows + other.rows, model.join_rows(self.state, other.state), mask,
                        torch.cat([self.next_pos, other.next_pos]), torch.cat([self.logits, other.logits]))


def _prefill(model: StepModel, rows: Sequence[RowRequest], numbers: list[int]) -> _KVBatch:
    """Prompt tokens of `rows` through the model: a prefix shared by all rows once, then each row's own part."""
    device = model.device
    n_rows = len(rows)
    prefix = shared_prefix_len(rows)
    suffix_len = max(len(r.prompt_ids) - prefix for r in rows)
    prompt_len = prefix + suffix_len
    suffix_ids = torch.full((n_rows, suffix_len), model.pad_id, dtype=torch.long)
    mask = torch.zeros((n_rows, prompt_len), dtype=torch.long)
    mask[:, :prefix] = 1
    for i, r in enumerate(rows):
        own = r.prompt_ids[prefix:]
        suffix_ids[i, suffix_len - len(own) :] = torch.tensor(own, dtype=torch.long)
        mask[i, prompt_len - len(own) :] = 1
    suffix_ids, mask = suffix_ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    state = None
    if prefix:  # compute the shared prefix once, then give every row its own copy of its KV
        prefix_ids = torch.tensor([rows[0].prompt_ids[:prefix]], dtype=torch.long, device=device)
        _, state = model.prefill(prefix_ids, mask[:1, :prefix], positions[:1, :prefix], None)
        state = model.repeat_rows(state, n_rows)
    logits, state = model.prefill(suffix_ids, mask, positions[:, prefix:], state)
    return _KVBatch(list(numbers), state, mask, mask.sum(-1, keepdim=True), logits)


Admit = Callable[[int], list[RowRequest]]  # rows running now -> rows that join them
Finished = Callable[[int, RowResult], None]


class _Decode:
    """The rows of one decode run: their requests, tokens so far, and which have finished."""

    def __init__(self, model: StepModel, finished: Finished | None):
        self.model, self.finished = model, finished
        self.requests: list[RowRequest] = []
        self.generated: list[list[int]] = []
        self.results: list[RowResult | None] = []
        self.watches: list[_StopWatch] = []
        self.sampler = RowSampler([], model.device)

    def add(self, rows: Sequence[RowRequest]) -> list[int]:
        first = len(self.requests)
        self.requests += rows
        self.generated += [[] for _ in rows]
        self.results += [None] * len(rows)
        self.watches += [_StopWatch(r.stop) for r in rows]
        self.sampler.add(rows)
        return list(range(first, len(self.requests)))

    def advance(self, batch: _KVBatch) -> tuple[torch.Tensor, list[int]]:
        """Sample the next token of every row in `batch`; returns the tokens and the positions still live."""
        tokens = self.sampler.sample(batch.logits, batch.rows, self.generated)
        live = []
        for j, (i, tok) in enumerate(zip(batch.rows, tokens.tolist())):
            if self.results[i] is not None:
                continue
            ids, request = self.generated[i], self.requests[i]
            if tok not in self.model.eos_ids:
                ids.append(tok)
                if len(ids) < request.max_tokens and not self.watches[i].hit(self.model, ids):
                    live.append(j)
                    continue
            self.results[i] = RowResult(_final_text(self.model, ids, request.stop), len(ids))
            if self.finished:
                self.finished(i, self.results[i])
        return tokens, live


@torch.inference_mode()
def decode_batch(model: StepModel, rows: Sequence[RowRequest], admit: Admit | None = None,
                 finished: Finished | None = None) -> list[RowResult]:
    """Generate `rows` in one batch (continuous batching when `admit` is given) and return every row's result.

    `admit(running)` is asked between decode steps for rows to join the `running` ones; rows it returns are
    prefilled and join the batch, so a caller that arrives a moment late does not wait for the whole batch.
    Admitted rows are numbered after `rows`, in order. `finished(i, result)` is called as soon as row i ends.
    """
    run = _Decode(model, finished)
    batch = _prefill(model, rows, run.add(rows))
    while True:
        tokens, live = run.advance(batch)
        joining = admit(len(live)) if admit is not None and model.can_join(batch.state) else []
        if joining:
            newcomers = _prefill(model, joining, run.add(joining))
            new_tokens, new_live = run.advance(newcomers)
            old = batch.select(model, live) if len(live) < len(batch.rows) else batch
            tokens = torch.cat([_rows(tokens, live), _rows(new_tokens, new_live)])
            newcomers = newcomers.select(model, new_live) if len(new_live) < len(newcomers.rows) else newcomers
            batch = old.join(model, newcomers) if old.rows else newcomers
            if not batch.rows:
                continue
        elif not live:
            break
        # dropping rows copies the whole KV state, so wait until enough rows have finished to pay for it
        elif len(batch.rows) - len(live) >= max(1, len(batch.rows) // PRUNE_FRACTION):
            batch = batch.select(model, live)
            tokens = _rows(tokens, live)
        batch.mask = torch.cat([batch.mask, batch.mask.new_ones((len(batch.rows), 1))], dim=1)
        batch.logits, batch.state = model.step(tokens.unsqueeze(-1), batch.mask, batch.next_pos, batch.state)
        batch.next_pos = batch.next_pos + 1
    assert all(r is not None for r in run.results), "the loop ends only when every row has finished"
    return list(run.results)  # type: ignore[arg-type]


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

    `run_batch(rows, admit, finished)` is `decode_batch` with a model bound: it may call `admit(running)`
    between steps to take rows that arrived meanwhile (never more than `max_batch` in all), and
    `finished(i, result)` as each row ends, so its caller need not wait for the rest of the batch.
    `linger_s`: after the first row arrives, wait until no new row has come for this long (at most
    `max_linger_s`), so that callers started together share the prefill too.
    """

    def __init__(
        self,
        run_batch: Callable[[list[RowRequest], Admit, Finished], list[RowResult]],
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
        self.batch_sizes: list[int] = []  # rows per decode run, those that joined it included
        self.joined: list[int] = []  # of which joined a running batch
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

    def _pop(self, limit: int) -> list[tuple[_Job, int]]:
        """Up to `limit` waiting rows whose callers still want them; the lock must be held."""
        taken: list[tuple[_Job, int]] = []
        while self._pending and len(taken) < limit:
            job, k = self._pending.popleft()
            if not (job.failed or job.future.cancelled()):
                taken.append((job, k))
        return taken

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
            return self._pop(self.max_batch)

    def _work(self) -> None:
        while (taken := self._take()) is not None:
            if not taken:
                continue
            self.batch_sizes.append(len(taken))  # counted before any caller hears back, joiners as they join
            self.joined.append(0)

            def admit(running: int) -> list[RowRequest]:
                if self._closed or running >= self.max_batch:
                    return []
                with self._cond:
                    more = self._pop(self.max_batch - running)
                taken.extend(more)
                self.batch_sizes[-1] += len(more)
                self.joined[-1] += len(more)
                return [job.rows[k] for job, k in more]

            def finished(i: int, result: RowResult) -> None:
                job, k = taken[i]
                job.results[k] = result
                job.remaining -= 1
                if job.remaining == 0 and not job.failed:
                    job.resolve()

            try:
                results = self._run_batch([job.rows[k] for job, k in taken], admit, finished)
                for i, result in enumerate(results):  # rows it did not report as they ended
                    job, k = taken[i]
                    if job.results[k] is None:
                        finished(i, result)
                if any(job.remaining for job, _ in taken):
                    raise ModelError(f"the batch returned {len(results)} results for {len(taken)} rows")
            except Exception as e:  # the callers see it; the worker lives on for the next batch
                for job in {job for job, _ in taken}:
                    if job.remaining and not job.failed:
                        job.fail(ModelError(f"local generation failed: {type(e).__name__}: {e}"))

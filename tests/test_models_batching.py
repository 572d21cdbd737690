"""The batching loop against a tiny fake StepModel: padding, stopping, pruning, sampling, the queue."""

import asyncio
import threading

import pytest
import torch

from ratchet.models.base import ModelError
from ratchet.models.batching import DynamicBatcher, RowRequest, RowResult, RowSampler, decode_batch

VOCAB = 8
EOS = 0


class CountingStepModel:
    """Next token = last token + 1 (wrapping to 1, so EOS=0 never comes by itself unless asked).

    It checks what a real model relies on: left padding, positions that continue per row, a mask that
    grows by one column a step, and a state whose rows follow `select_rows`.
    """

    device = torch.device("cpu")
    pad_id = 7
    eos_ids = frozenset({EOS})

    def __init__(self, eos_after: dict[int, int] | None = None, flat: bool = False):
        self.eos_after = eos_after or {}  # first prompt token -> emit EOS once this many tokens are generated
        self.flat = flat  # uniform logits (for sampling tests)
        self.batch_widths: list[int] = []
        self.prefill_widths: list[tuple[int, int]] = []  # (rows, tokens) per prefill call

    def _logits(self, state):
        logits = torch.full((len(state), VOCAB), -1e9)
        for j, row in enumerate(state):
            if self.flat:
                logits[j] = 0.0
                logits[j, EOS] = -1e9
                continue
            nxt = row["last"] % (VOCAB - 1) + 1
            if self.eos_after.get(row["first"]) == row["generated"]:
                nxt = EOS
            logits[j, nxt] = 0.0
        return logits

    def prefill(self, input_ids, attention_mask, position_ids, state):
        width = input_ids.shape[1]
        past = attention_mask.shape[1] - width  # columns already in `state` (a shared prefix)
        rows = []
        for j, (ids, mask, pos) in enumerate(zip(input_ids.tolist(), attention_mask.tolist(), position_ids.tolist())):
            before = state[j] if state else {"first": None, "next_pos": 0}
            assert mask[:past] == [1] * past and before["next_pos"] == past, "the prefix is attended in full"
            real = [t for t, m in zip(ids, mask[past:]) if m]
            assert mask[past:] == [0] * (width - len(real)) + [1] * len(real), "left padding expected"
            assert pos[-1] == past + len(real) - 1, "positions skip the padding"
            first = before["first"] if state else real[0]
            rows.append({"first": first, "last": real[-1], "generated": 0, "next_pos": past + len(real)})
        self.prefill_widths.append((len(rows), width))
        self.batch_widths.append(len(rows))
        return self._logits(rows), rows

    def repeat_rows(self, state, times):
        assert len(state) == 1
        return [dict(state[0]) for _ in range(times)]

    def step(self, tokens, attention_mask, position_ids, state):
        assert tokens.shape == (len(state), 1) and attention_mask.shape[0] == len(state)
        for row, tok, pos in zip(state, tokens[:, 0].tolist(), position_ids[:, 0].tolist()):
            assert pos == row["next_pos"], "positions must continue per row, ignoring padding"
            row.update(last=tok, generated=row["generated"] + 1, next_pos=pos + 1)
        self.batch_widths.append(len(state))
        return self._logits(state), state

    def select_rows(self, state, rows):
        return [state[i] for i in rows.tolist()]

    def can_join(self, state):
        return True

    def join_rows(self, state, other):
        return state + other

    def detokenize(self, ids):
        return "".join("abcdefgh"[t] for t in ids)


def test_rows_of_different_lengths_and_budgets():
    model = CountingStepModel()
    rows = [RowRequest((1,), max_tokens=3), RowRequest((2, 3, 4, 5), max_tokens=5), RowRequest((6, 6), max_tokens=1)]
    out = decode_batch(model, rows)
    # 1 -> 2 3 4 ; 5 -> 6 7 1 2 3 ; 6 -> 7
    assert [r.text for r in out] == ["cde", "ghbcd", "h"]
    assert [r.completion_tokens for r in out] == [3, 5, 1]
    # finished rows leave the batch: 3 rows at prefill, then 2, then 1
    assert model.batch_widths == [3, 2, 2, 1, 1]


def test_shared_prefix_is_computed_once():
    system = tuple([5] * 10)
    rows = [RowRequest(system + (1,), max_tokens=2), RowRequest(system + (2, 6, 3), max_tokens=3)]
    model = CountingStepModel()
    out = decode_batch(model, rows)
    assert model.prefill_widths == [(1, 10), (2, 3)]  # the prefix once, then each row's own tokens
    separately = [decode_batch(CountingStepModel(), [r])[0] for r in rows]
    assert out == separately == [RowResult("cd", 2), RowResult("efg", 3)]


def test_short_common_prefix_is_not_split_off():
    rows = [RowRequest((5, 5, 1), max_tokens=1), RowRequest((5, 5, 2), max_tokens=1)]
    model = CountingStepModel()
    decode_batch(model, rows)
    assert model.prefill_widths == [(2, 3)]


def test_finished_rows_leave_once_enough_have_finished():
    # 16 rows: the row with budget 1 finishes first but stays (1 < 16/8), then 2 more finish and all 3 leave
    rows = [RowRequest((1,), max_tokens=1), RowRequest((1,), max_tokens=2)] + [RowRequest((1,), max_tokens=5)] * 14
    model = CountingStepModel()
    out = decode_batch(model, rows)
    assert [r.completion_tokens for r in out] == [1, 2] + [5] * 14
    assert model.batch_widths == [16, 16, 14, 14, 14]


def test_eos_ends_a_row_and_is_not_in_the_text():
    model = CountingStepModel(eos_after={1: 2})
    out = decode_batch(model, [RowRequest((1,), max_tokens=10), RowRequest((3,), max_tokens=2)])
    assert out[0].text == "cd" and out[0].completion_tokens == 2
    assert out[1].text == "ef"


def test_stop_string_cuts_the_text():
    model = CountingStepModel()
    out = decode_batch(model, [RowRequest((1,), max_tokens=20, stop=("ef",)), RowRequest((1,), max_tokens=4)])
    assert out[0].text == "cd" and out[0].completion_tokens == 4  # generated c d e f, cut before "ef"
    assert out[1].text == "cdef"


def test_rows_that_arrive_mid_batch_join_it_and_finish_as_if_alone():
    first = [RowRequest((1,), max_tokens=6), RowRequest((2, 3, 4), max_tokens=3)]
    late = {2: [RowRequest((5, 5, 5, 5, 6), max_tokens=4)], 4: [RowRequest((3,), max_tokens=2, temperature=1.0, seed=9)]}
    asked: list[int] = []

    def admit(running):
        asked.append(running)
        return late.get(len(asked), [])

    ended: list[int] = []
    model = CountingStepModel()
    out = decode_batch(model, first, admit, lambda i, r: ended.append(i))
    alone = [decode_batch(CountingStepModel(), [r])[0] for r in first + late[2] + late[4]]
    assert out == alone
    assert ended == [1, 2, 3, 0]  # each row is reported the moment it ends, not when the batch does
    assert model.prefill_widths == [(2, 3), (1, 5), (1, 1)]  # newcomers are prefilled on their own
    assert max(model.batch_widths) == 3  # and then share the decode steps


def test_a_late_caller_joins_the_running_batch_and_returns_before_it_ends():
    model = CountingStepModel()
    batcher = DynamicBatcher(lambda rows, admit, finished: decode_batch(model, rows, admit, finished), max_batch=8)

    async def go():
        long = asyncio.create_task(batcher.submit([RowRequest((1,), max_tokens=400)]))
        while not model.batch_widths:  # the long row is decoding
            await asyncio.sleep(0.001)
        short = await batcher.submit([RowRequest((2,), max_tokens=2)])
        return short, long.done(), await long

    try:
        short, long_done_first, long = asyncio.run(go())
    finally:
        batcher.close()
    assert short[0].text == "de" and not long_done_first and long[0].completion_tokens == 400
    assert batcher.batch_sizes == [2] and batcher.joined == [1]


def test_sampled_row_does_not_depend_on_its_batch_mates():
    model = CountingStepModel(flat=True)
    row = RowRequest((1,), max_tokens=12, temperature=1.0, seed=42)
    alone = decode_batch(model, [row])[0].text
    crowd = decode_batch(
        model, [RowRequest((2, 2, 2), max_tokens=3, temperature=0.5, seed=1), row, RowRequest((3,), max_tokens=30)]
    )[1].text
    other_seed = decode_batch(model, [RowRequest((1,), max_tokens=12, temperature=1.0, seed=43)])[0].text
    assert alone == crowd and alone != other_seed


def test_top_p_keeps_only_the_nucleus():
    logits = torch.tensor([[0.0, 5.0, 4.0, -1.0]])
    rows = [RowRequest((1,), max_tokens=1, temperature=1.0, top_p=0.5, seed=s) for s in range(40)]
    picks = {int(RowSampler([r], torch.device("cpu")).sample(logits, [0])[0]) for r in rows}
    assert picks == {1}  # token 1 alone holds > 50% of the mass
    wide = {int(RowSampler([r], torch.device("cpu")).sample(logits, [0])[0]) for r in
            [RowRequest((1,), max_tokens=1, temperature=1.0, seed=s) for s in range(40)]}
    assert {1, 2} <= wide


def test_greedy_rows_take_the_argmax():
    logits = torch.tensor([[0.0, 1.0, 3.0], [2.0, 0.0, 1.0]])
    rows = [RowRequest((1,), max_tokens=1), RowRequest((1,), max_tokens=1)]
    assert RowSampler(rows, torch.device("cpu")).sample(logits, [0, 1]).tolist() == [2, 0]


def test_batcher_groups_concurrent_callers_and_splits_at_max_batch():
    model = CountingStepModel()
    seen: list[int] = []

    def run(rows, admit, finished):
        seen.append(threading.get_ident())
        return decode_batch(model, rows, admit, finished)

    batcher = DynamicBatcher(run, max_batch=4)

    async def go():
        calls = [batcher.submit([RowRequest((i % 6 + 1,), max_tokens=2)] * (1 + i % 2)) for i in range(6)]
        return await asyncio.gather(*calls)

    try:
        out = asyncio.run(go())
    finally:
        batcher.close()
    assert [len(r) for r in out] == [1, 2, 1, 2, 1, 2]
    assert out[1][0].text == "de" and out[5][1].text == "hb"  # prompt 6 -> 7 -> 1 (wraps)
    assert sum(batcher.batch_sizes) == 9 and max(model.batch_widths) == 4  # never more than max_batch at once
    assert len(set(seen)) == 1  # one worker thread


def test_batcher_reports_errors_and_keeps_working():
    calls = {"n": 0}

    def run(rows, admit, finished):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("out of memory")
        return decode_batch(CountingStepModel(), rows)

    batcher = DynamicBatcher(run, max_batch=8)

    async def go():
        with pytest.raises(ModelError, match="out of memory"):
            await batcher.submit([RowRequest((1,), max_tokens=1)])
        return await batcher.submit([RowRequest((1,), max_tokens=1)])

    try:
        assert asyncio.run(go())[0].text == "c"
    finally:
        batcher.close()


def test_closed_batcher_refuses_new_work():
    batcher = DynamicBatcher(lambda rows, admit, finished: [], max_batch=2)
    batcher.close()
    with pytest.raises(ModelError, match="closed"):
        asyncio.run(batcher.submit([RowRequest((1,), max_tokens=1)]))

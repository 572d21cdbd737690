"""top_k and the three penalties: applied by the local backend's sampler, passed by openai, declarable as knobs."""

import pytest
import torch

from ratchet.config import ConfigError
from ratchet.harness.params import SAMPLING_KNOBS, parse_params
from ratchet.models.batching import RowRequest
from ratchet.models.local import LocalModel
from ratchet.models.sampling import RowSampler
from ratchet.types import SamplingParams

CPU = torch.device("cpu")


def pick(row: RowRequest, logits: list[float], generated: list[int] | None = None) -> int:
    sampler = RowSampler([row], CPU)
    return int(sampler.sample(torch.tensor([logits]), [0], [generated or []])[0])


def test_repetition_penalty_follows_transformers_and_covers_the_prompt():
    logits = [0.0, 2.0, 1.9, -1.0]
    assert pick(RowRequest((5,), 4), logits) == 1
    assert pick(RowRequest((1,), 4, repetition_penalty=1.2), logits) == 2  # 2.0 / 1.2 < 1.9: the prompt's token loses
    assert pick(RowRequest((5,), 4, repetition_penalty=1.2), logits, generated=[1]) == 2  # so does the output's
    # a negative logit is multiplied (more negative), as transformers does
    sampler = RowSampler([RowRequest((3,), 4, repetition_penalty=2.0)], CPU)
    assert sampler.penalised(torch.tensor([logits]), [0], [[]])[0, 3].item() == -2.0


def test_frequency_and_presence_penalties_count_the_output_only():
    logits = [0.0, 3.0, 2.5, 0.0]
    assert pick(RowRequest((1, 1, 1), 4, frequency_penalty=0.2), logits) == 1  # the prompt is not counted
    assert pick(RowRequest((5,), 4, frequency_penalty=0.2), logits, generated=[1, 1]) == 1  # 3.0 - 0.4 > 2.5
    assert pick(RowRequest((5,), 4, frequency_penalty=0.2), logits, generated=[1, 1, 1]) == 2  # 3.0 - 0.6 < 2.5
    assert pick(RowRequest((5,), 4, presence_penalty=0.6), logits, generated=[1]) == 2  # once is enough
    assert pick(RowRequest((5,), 4, presence_penalty=-1.0), [0.0, 2.0, 2.5, 0.0], generated=[1]) == 1  # < 0 favours


def test_top_k_keeps_only_the_k_likeliest_tokens():
    logits = [1.0, 1.1, 1.2, 5.0, 4.9]
    picks = {pick(RowRequest((0,), 1, temperature=1.0, top_k=2, seed=s), logits) for s in range(60)}
    assert picks == {3, 4}
    wide = {pick(RowRequest((0,), 1, temperature=5.0, seed=s), logits) for s in range(200)}
    assert len(wide) > 2


def test_a_penalised_row_does_not_change_its_neighbours():
    logits = torch.tensor([[0.0, 2.0, 1.9, 0.0]] * 2)
    rows = [RowRequest((1,), 4, repetition_penalty=1.5), RowRequest((1,), 4)]
    assert RowSampler(rows, CPU).sample(logits, [0, 1], [[], []]).tolist() == [2, 1]


def test_local_rows_carry_every_sampling_parameter():
    model = LocalModel.__new__(LocalModel)  # rows_for needs only the context length: no weights to load
    model.name = "x"
    model.step_model = type("Step", (), {"context_len": 100})()
    params = SamplingParams(max_tokens=9, seed=3, top_k=5, frequency_penalty=0.5, presence_penalty=-0.5,
                            repetition_penalty=1.1, n=2, temperature=0.5)
    rows = model.rows_for([1, 2, 3], params)
    assert [(r.top_k, r.frequency_penalty, r.presence_penalty, r.repetition_penalty) for r in rows] == [(5, 0.5, -0.5, 1.1)] * 2


def test_local_greedy_samples_decode_one_row():
    model = LocalModel.__new__(LocalModel)
    model.name = "x"
    model.step_model = type("Step", (), {"context_len": 100})()
    assert len(model.rows_for([1, 2, 3], SamplingParams(n=4, temperature=0.0))) == 1
    assert len(model.rows_for([1, 2, 3], SamplingParams(n=4, temperature=0.3))) == 4


@pytest.mark.parametrize("body, message", [
    ('[top_k]\ntype = "float"\nrange = [0.0, 50.0]\nvalue = 0.0', "declare an int or choice knob"),
    ('[top_p]\ntype = "float"\nrange = [0.0, 1.0]\nvalue = 1.0', r"must be in \(0, 1\]; range allows 0.0"),
    ('[frequency_penalty]\ntype = "float"\nrange = [-3.0, 2.0]\nvalue = 0.0', r"\[-2, 2\]; range allows -3.0"),
    ('[repetition_penalty]\ntype = "choice"\nchoices = [1.0, 20.0]\nvalue = 1.0', "choices allows 20.0"),
    ('[presence_penalty]\ntype = "str"\nvalue = "high"', "not type = 'str'"),
])
def test_a_sampling_knob_must_stay_where_its_parameter_is_valid(body, message):
    with pytest.raises(ConfigError, match=message):
        parse_params(body, "params.toml")


def test_sampling_knobs_declare_and_reach_every_call():
    params = parse_params('[top_k]\ntype = "int"\nrange = [0, 50]\nvalue = 20\n\n[repetition_penalty]\ntype = "choice"\n'
                          'choices = [1.0, 1.1, 1.3]\nvalue = 1.1\n\n[frequency_penalty]\ntype = "float"\n'
                          'range = [0.0, 1.0]\nvalue = 0.5\n')
    assert params.values() == {"top_k": 20, "repetition_penalty": 1.1, "frequency_penalty": 0.5}
    # the worker turns knobs of these names into the call's sampling parameters (and they validate there)
    from ratchet.harness import worker

    assert set(params.values()) <= set(worker._SAMPLING_KNOBS) == set(SAMPLING_KNOBS)  # one list on each side of the box
    assert SamplingParams.from_json(params.values()).extras() == params.values()

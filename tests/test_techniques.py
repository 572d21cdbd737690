"""The generic harness techniques: extraction strategies, the majority vote, the format retry, demos and
instruction variants, as units and through the sandbox with the plain seed harness of `ratchet init --suite`."""

import asyncio
import shutil

import pytest

from ratchet.harness import techniques as T
from ratchet.harness.budget import EpisodeLimits
from ratchet.harness.loader import load_harness
from ratchet.harness.params import load_params, update_values_text, with_values
from ratchet.harness.runtime import EpisodeServices, offers_demos, run_episode
from ratchet.sandbox import Sandbox, SandboxLimits
from ratchet.scaffold import SEED_TEMPLATE
from ratchet.types import Completion, Task


@pytest.mark.parametrize("strategy, text, expected", [
    ("raw", "  the answer is 7 \n", "the answer is 7"),
    ("last_line", "step 1\nstep 2\n**42**\n\n", "42"),
    ("last_number", "3 apples and 1,204 pears, so 12.5", "12.5"),
    ("last_number", "1,204 pears", "1204"),
    ("marker", "thinking...\nAnswer: Paris\nthanks", "Paris"),
    ("marker", "answer: 1\nANSWER:  2", "2"),
    ("boxed", r"so \boxed{\frac{1}{2}} and \boxed{x^{2}}", "x^{2}"),
    ("raw", "   ", None),
    ("last_number", "no digits here", None),
    ("marker", "no marker", None),
    ("boxed", r"\boxed{unclosed", None),
])
def test_extract(strategy, text, expected):
    assert T.extract(text, strategy) == expected


def test_extract_regex_and_errors():
    assert T.extract("id=17; id=23", "regex", pattern=r"id=(\d+)") == "23"
    assert T.extract("cat dog", "regex", pattern=r"d\w+") == "dog"
    assert T.extract("nothing", "regex", pattern=r"\d+") is None
    with pytest.raises(ValueError, match="needs a pattern"):
        T.extract("x", "regex")
    with pytest.raises(ValueError, match="not a valid regular expression"):
        T.extract("x", "regex", pattern="(")
    with pytest.raises(ValueError, match="unknown extraction strategy 'last'"):
        T.extract("x", "last")
    assert "Answer:" in T.format_error("marker") and "boxed" in T.format_error("boxed")
    assert T.extract(None, "raw") is None


def test_majority_vote():
    assert T.majority(["7", "8", "7.0", None]) == "7"  # 7 and 7.0 are one answer
    assert T.majority(["Paris.", "paris", "Lyon"]) == "Paris."
    assert T.majority(["a", "b"]) == "a"  # a tie goes to the first seen
    assert T.majority([None, "", "  "]) is None
    assert T.normalize("1,000") == "1000" and T.normalize(" Two  Words. ") == "two words"


class VaryingModel:
    """Sample k of a call answers `replies[k]`; after a format complaint, answers `fixed`."""

    name = "varying"

    def __init__(self, replies, fixed="Answer: 5"):
        self.replies, self.fixed, self.requests = replies, fixed, []

    async def chat(self, messages, params):
        self.requests.append((messages, params))
        if "could not be read" in messages[-1]["content"]:
            texts = [self.fixed] * params.n
        else:
            texts = [self.replies[k % len(self.replies)] for k in range(params.n)]
        return Completion(texts=texts, prompt_tokens=10, completion_tokens=3)

    async def aclose(self):
        pass


def seed_harness(tmp_path, **values):
    """The seed harness of `ratchet init --suite`, with some knob values changed."""
    root = tmp_path / "seed"
    shutil.copytree(SEED_TEMPLATE / "harness", root)
    path = root / "params.toml"
    params = load_params(path)
    path.write_text(update_values_text(path.read_text(), with_values(params, values)))
    return load_harness(root)


def episode(harness, model, demos=None, task=Task("t1", "How many legs has a cat?")):
    services = EpisodeServices(model=model, sandbox=Sandbox(SandboxLimits(wall_s=30)),
                               limits=EpisodeLimits(max_steps=12, max_tokens=5000, timeout_s=20, loop_repeats=3),
                               demos=demos or [], demos_version="v1" if demos else None)
    return asyncio.run(run_episode(harness, task, services, seed=1)), services


def test_plain_seed_is_one_prompt_one_call(tmp_path):
    model = VaryingModel(["A cat has 4 legs."])
    traj, _ = episode(seed_harness(tmp_path), model)
    assert traj.error is None and traj.output == "A cat has 4 legs."
    assert len(model.requests) == 1
    messages, params = model.requests[0]
    assert [m["role"] for m in messages] == ["system", "user"] and params.n == 1
    assert messages[0]["content"].strip() == "You are a helpful assistant."
    assert messages[1]["content"].strip() == "How many legs has a cat?"


def test_self_consistency_votes_over_extracted_answers(tmp_path):
    model = VaryingModel(["Answer: 7", "I say\nAnswer: 8", "so... Answer: 7."])
    traj, _ = episode(seed_harness(tmp_path, samples=3, extract="marker"), model)
    assert traj.output == "7" and len(model.requests) == 1 and model.requests[0][1].n == 3


def test_format_retry_shows_the_error(tmp_path):
    model = VaryingModel(["I am not sure."])
    traj, _ = episode(seed_harness(tmp_path, extract="marker", format_retries=1), model)
    assert traj.output == "5" and len(model.requests) == 2
    retry = model.requests[1][0]
    assert retry[-2] == {"role": "assistant", "content": "I am not sure."}
    assert "no line starting with 'Answer:'" in retry[-1]["content"]
    # without retries the raw reply is the answer (the suite's own extraction still gets its chance)
    model = VaryingModel(["I am not sure."])
    assert episode(seed_harness(tmp_path / "b", extract="marker"), model)[0].output == "I am not sure."


def test_demos_and_instruction_variants(tmp_path):
    pool = [{"task_id": "train-1", "input": "How many legs has a dog?", "output": "Answer: 4"},
            {"task_id": "t1", "input": "the episode's own task", "output": "never shown"},
            {"task_id": "train-2", "input": "How many legs has a bird?", "output": "Answer: 2"}]
    model = VaryingModel(["Answer: 4"])
    harness = seed_harness(tmp_path, demos=2, instruction="steps")
    traj, services = episode(harness, model, demos=pool)
    messages = model.requests[0][0]
    assert "step by step" in messages[0]["content"]
    assert [m["content"].strip() for m in messages[1:]] == ["How many legs has a dog?", "Answer: 4",
                                                           "How many legs has a bird?", "Answer: 2",
                                                           "How many legs has a cat?"]
    assert offers_demos(harness, services)
    plain = seed_harness(tmp_path / "b")  # demos = 0: the pool is not even sent, so its runs are named as without one
    model = VaryingModel(["4"])
    _, services = episode(plain, model, demos=pool)
    assert not offers_demos(plain, services) and len(model.requests[0][0]) == 2

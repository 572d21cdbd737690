import asyncio
import json

import pytest

from ratchet.config import ConfigError
from ratchet.harness.params import parse_params
from ratchet.loop.edits import EditError, apply_edits, changed_files, parse_edits
from ratchet.loop.proposers import build_proposer
from ratchet.loop.proposers.base import Proposal, ProposalContext, ProposalError
from ratchet.loop.proposers.llm import LLMProposer, build_messages
from ratchet.loop.proposers.mix import MixProposer
from ratchet.loop.proposers.search import SearchProposer
from ratchet.types import Completion

PARAMS = """[temperature]
type = "float"
range = [0.0, 1.0]
value = 0.0  # greedy

[n_samples]
type = "int"
range = [1, 8]
value = 1

[style]
type = "choice"
choices = ["plain", "cot"]
value = "plain"

[skills]
library = ["calculator", "python"]
enabled = []
"""
HARNESS = "def solve(task, ctx):\n    reply = ctx.llm(task.input)\n    return reply.strip()\n"
FILES = {"harness.py": HARNESS, "params.toml": PARAMS, "prompts/system.md": "Answer the question.\n"}


def context(round_: int = 0, files=None, parent_score=0.4) -> ProposalContext:
    files = dict(files or FILES)
    return ProposalContext(round=round_, files=files, params=parse_params(files.get("params.toml", "")),
                           failures_prompt="task 3: expected 12, got 'twelve'", failure_summary={"format": 3},
                           lessons=["numbers as digits helped"], history=[{"round": 0, "proposer": "search",
                           "summary": "temperature 0 -> 0.3", "decision": "rejected", "effect": -0.05}],
                           seed=7, parent_score=parent_score)


# --- edits --------------------------------------------------------------------------------------

def test_search_replace_blocks_with_various_path_headers():
    text = """RATIONALE: x
path: prompts/system.md
<<<<<<< SEARCH
Answer the question.
=======
Answer the question with digits only.
>>>>>>> REPLACE

### FILE: harness.py
```python
<<<<<<< SEARCH
    return reply.strip()
=======
    return reply.strip().split()[-1]
>>>>>>> REPLACE
```
"""
    edits = parse_edits(text)
    assert [e.path for e in edits] == ["prompts/system.md", "harness.py"]
    out = apply_edits(FILES, edits)
    assert out["prompts/system.md"] == "Answer the question with digits only.\n"
    assert out["harness.py"].endswith("return reply.strip().split()[-1]\n")
    assert FILES["harness.py"] == HARNESS  # input untouched


def test_whole_file_block_and_unified_diff_and_deletion():
    text = """rules.md
<<<<<<< SEARCH
=======
Always answer with a number.
>>>>>>> REPLACE
--- a/harness.py
+++ b/harness.py
@@ -2,2 +2,3 @@
     reply = ctx.llm(task.input)
-    return reply.strip()
+    answer = reply.strip()
+    return answer
--- a/prompts/system.md
+++ /dev/null
@@ -1 +0,0 @@
-Answer the question.
"""
    out = apply_edits(FILES, parse_edits(text))
    assert out["rules.md"] == "Always answer with a number.\n"
    assert out["harness.py"] == "def solve(task, ctx):\n    reply = ctx.llm(task.input)\n    answer = reply.strip()\n    return answer\n"
    assert "prompts/system.md" not in out
    changes = changed_files(FILES, out)
    assert changes["prompts/system.md"] is None and set(changes) == {"rules.md", "harness.py", "prompts/system.md"}


def test_fuzzy_match_reindents_and_diff_with_wrong_counts():
    text = "harness.py\n<<<<<<< SEARCH\nreturn reply.strip()\n=======\nreturn reply.strip().lower()\n>>>>>>> REPLACE\n"
    assert apply_edits(FILES, parse_edits(text))["harness.py"].endswith("    return reply.strip().lower()\n")
    sloppy = "--- a/harness.py\n+++ b/harness.py\n@@ -10,7 +10,9 @@\n def solve(task, ctx):\n-    reply = ctx.llm(task.input)\n+    reply = ctx.llm(task.input.strip())\n"
    assert "task.input.strip()" in apply_edits(FILES, parse_edits(sloppy))["harness.py"]


@pytest.mark.parametrize("text, message", [
    ("just prose, no edits", "no edits found"),
    ("harness.py\n<<<<<<< SEARCH\nfoo\n>>>>>>> REPLACE\n", "no ======= divider"),
    ("harness.py\n<<<<<<< SEARCH\nfoo\n=======\nbar\n", "no closing >>>>>>> REPLACE"),
    ("<<<<<<< SEARCH\nfoo\n=======\nbar\n>>>>>>> REPLACE\n", "no file path"),
    ("bar\n>>>>>>> REPLACE\n", "without a preceding"),
    ("harness.py\n<<<<<<< SEARCH\nnot in the file\n=======\nx\n>>>>>>> REPLACE\n", r"block 1 \(harness.py\): SEARCH text not found"),
    ("nope.py\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n", r"nope.py\): no such file"),
    ("../etc/passwd\n<<<<<<< SEARCH\n=======\ny\n>>>>>>> REPLACE\n", "leaves the harness dir"),
    ("/etc/passwd\n<<<<<<< SEARCH\n=======\ny\n>>>>>>> REPLACE\n", "absolute"),
])
def test_malformed_edits_say_what_is_wrong(text, message):
    with pytest.raises(EditError, match=message):
        apply_edits(FILES, parse_edits(text))


def test_ambiguous_search_is_an_error():
    files = {"a.md": "x\ny\nx\n"}
    with pytest.raises(EditError, match="matches 2 places"):
        apply_edits(files, parse_edits("a.md\n<<<<<<< SEARCH\nx\n=======\nz\n>>>>>>> REPLACE\n"))


# --- search -------------------------------------------------------------------------------------

def run_search(proposer: SearchProposer, rounds: int, start: int = 0) -> list[Proposal]:
    out = []
    for r in range(start, start + rounds):
        p = asyncio.run(proposer.propose(context(r)))
        proposer.observe(p, accepted=False, score=0.1 * (r % 5))
        out.append(p)
    return out


def test_search_proposes_valid_distinct_params_only():
    proposals = run_search(SearchProposer(seed=3), 8)
    parent = parse_params(PARAMS)
    points = []
    for p in proposals:
        assert set(p.edits) == {"params.toml"} and p.proposer == "search"
        new = parse_params(p.edits["params.toml"])  # valid
        assert (new.values(), new.skills_enabled) != (parent.values(), parent.skills_enabled)
        assert "# greedy" in p.edits["params.toml"]  # the user's comments survive
        assert p.rationale.startswith("Search over 5 declared knobs") and "Changed:" in p.rationale
        assert "above the parent's 0.400" in p.hypothesis
        points.append(json.dumps(p.meta["search_point"], sort_keys=True))
    assert len(set(points)) == len(points)


def test_search_state_round_trips_exactly():
    a = SearchProposer(seed=11)
    run_search(a, 6)
    state = json.loads(json.dumps(a.state_dict()))
    b = SearchProposer(seed=0)
    b.load_state_dict(state)
    assert [p.edits for p in run_search(a, 3, start=6)] == [p.edits for p in run_search(b, 3, start=6)]


def test_search_perturbs_when_the_space_is_tiny():
    files = dict(FILES, **{"params.toml": '[verify]\ntype = "bool"\nvalue = false\n'})
    s = SearchProposer(seed=0)
    first = asyncio.run(s.propose(context(0, files)))
    assert "value = true" in first.edits["params.toml"]
    s.observe(first, False, 0.1)
    # the only other point is now tried; the parent is never proposed
    second = asyncio.run(s.propose(context(1, files)))
    assert "value = true" in second.edits["params.toml"]


def test_search_without_knobs_fails_clearly():
    with pytest.raises(ProposalError, match="nothing to tune"):
        asyncio.run(SearchProposer().propose(context(0, {"harness.py": HARNESS})))


# --- llm ----------------------------------------------------------------------------------------

class StubModel:
    """Replies from a fixed list, in order, and records what it was asked."""

    name = "stub"

    def __init__(self, replies: list[str]):
        self.replies = list(replies)
        self.requests: list[list[dict]] = []

    async def chat(self, messages, params):
        self.requests.append(messages)
        return Completion(texts=[self.replies.pop(0) if self.replies else "..."])

    async def aclose(self):
        pass


VALID = """RATIONALE: failures show words instead of digits.
HYPOTHESIS: format failures drop and the dev mean rises.

prompts/system.md
<<<<<<< SEARCH
Answer the question.
=======
Answer the question. Reply with digits only.
>>>>>>> REPLACE
"""


def test_llm_retries_garbage_then_parses_valid_answer():
    model = StubModel(["lorem ipsum <<<< not an edit", VALID])
    proposal = asyncio.run(LLMProposer(model, max_retries=2).propose(context()))
    assert proposal.edits == {"prompts/system.md": "Answer the question. Reply with digits only.\n"}
    assert proposal.rationale == "failures show words instead of digits."
    assert proposal.hypothesis == "format failures drop and the dev mean rises."
    assert proposal.meta["attempts"] == 2 and "no RATIONALE" in proposal.meta["errors"][0]
    retry = model.requests[1]
    assert retry[-2]["role"] == "assistant" and "could not be used" in retry[-1]["content"]
    prompt = model.requests[0][1]["content"]
    for needle in ("### harness.py", "expected 12", "format: 3", "numbers as digits helped", "rejected, effect -0.050"):
        assert needle in prompt


def test_llm_rejects_syntax_errors_and_protected_paths_then_gives_up():
    broken = VALID.replace("prompts/system.md", "harness.py").replace("Answer the question.\n=", "    return reply.strip()\n=") \
        .replace("Answer the question. Reply with digits only.", "    return (")
    protected = VALID.replace("prompts/system.md\n<<<<<<< SEARCH\nAnswer the question.\n", "scorers/x.py\n<<<<<<< SEARCH\n")
    model = StubModel([broken, protected, "garbage"])
    with pytest.raises(ProposalError, match="no usable proposal after 3 attempts") as err:
        asyncio.run(LLMProposer(model, max_retries=2).propose(context()))
    errors = [a["error"] for a in err.value.attempts]
    assert "syntax error" in errors[0] and "protected path" in errors[1] and "no RATIONALE" in errors[2]


def test_llm_always_garbage_is_a_proposal_error():
    with pytest.raises(ProposalError):
        asyncio.run(LLMProposer(StubModel(["nonsense"] * 5), max_retries=1).propose(context()))


def test_prompt_truncates_large_files():
    files = dict(FILES, **{"skills/big.py": "x = 1\n" * 5000})
    prompt = build_messages(context(0, files), file_budget=3000, per_file=1000)[1]["content"]
    assert "more characters not shown" in prompt and len(prompt) < 8000
    assert prompt.index("### harness.py") < prompt.index("### params.toml")


# --- mix and factory ------------------------------------------------------------------------------

def test_mix_falls_back_shifts_and_round_trips():
    mix = MixProposer(SearchProposer(seed=1), LLMProposer(StubModel([])), seed=5)
    first = asyncio.run(mix.propose(context(0)))
    assert first.proposer == "search"  # the first turns alternate: search, then llm
    mix.observe(first, accepted=True, score=0.5)
    second = asyncio.run(mix.propose(context(1)))  # llm's turn: garbage, so search answers instead
    assert second.proposer == "search" and second.meta["fallback_errors"]
    mix.observe(second, accepted=True, score=0.6)
    assert mix.counts == {"search": [2, 0], "llm": [0, 1]}
    picks = []
    for r in range(2, 8):
        p = asyncio.run(mix.propose(context(r)))
        mix.observe(p, accepted=p.proposer == "search", score=0.5)
        picks.append(p.proposer)
    assert picks.count("search") == 6
    state = json.loads(json.dumps(mix.state_dict()))
    clone = MixProposer(SearchProposer(), LLMProposer(StubModel([])), seed=0)
    clone.load_state_dict(state)
    assert asyncio.run(clone.propose(context(9))).edits == asyncio.run(mix.propose(context(9))).edits


def test_mix_switch_strategy_forces_the_other_proposer():
    model = StubModel([VALID])
    mix = MixProposer(SearchProposer(seed=1), LLMProposer(model), seed=5)
    p = asyncio.run(mix.propose(context(0)))
    assert p.proposer == "search"
    mix.observe(p, accepted=False, score=0.1)
    mix.switch_strategy()
    assert mix.arms["search"].explore_left == 3
    assert asyncio.run(mix.propose(context(1))).proposer == "llm"
    assert "substantially different" in model.requests[0][1]["content"]


def test_build_proposer():
    assert isinstance(build_proposer("search", None, 1), SearchProposer)
    assert isinstance(build_proposer("llm", StubModel([]), 1), LLMProposer)
    assert isinstance(build_proposer("mix", StubModel([]), 1), MixProposer)
    with pytest.raises(ConfigError, match="needs a chat model"):
        build_proposer("llm", None, 1)
    with pytest.raises(ConfigError, match="unknown"):
        build_proposer("genetic", None, 1)


def test_propose_leaves_state_alone_so_a_kill_before_observe_resumes_exactly():
    mix = MixProposer(SearchProposer(seed=2), LLMProposer(StubModel([])), seed=3)
    for r in range(4):
        p = asyncio.run(mix.propose(context(r)))
        mix.observe(p, accepted=r == 1, score=0.3)
    mix.switch_strategy()
    before = json.dumps(mix.state_dict(), sort_keys=True)
    first = asyncio.run(mix.propose(context(4)))
    assert first.proposer == "search" and first.meta["forced"]  # llm was forced, failed, search answered
    assert json.dumps(mix.state_dict(), sort_keys=True) == before
    again = asyncio.run(mix.propose(context(4)))  # what a resumed run would do
    assert again.edits == first.edits and again.meta == first.meta

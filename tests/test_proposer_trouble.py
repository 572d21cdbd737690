"""Say what happened: a proposer that failed first shows in `ratchet log`, `ratchet show` and the UI (which, why,
what it cost), and `mix` benches a proposer that keeps producing nothing usable, saying so once."""

import asyncio

from ratchet.ledger import Ledger
from ratchet.loop.proposer_trouble import announce, proposer_failures
from ratchet.loop.proposers.llm import LLMProposer
from ratchet.loop.proposers.mix import MixProposer
from ratchet.loop.proposers.search import SearchProposer
from ratchet.loop.record import Decision
from ratchet.loop.views import LOG_COLUMNS, failure_notes, log_rows, show_text
from ratchet.models.scripted import ScriptedModel
from ratchet.ui import queries
from test_proposers import context


def test_mix_benches_a_proposer_after_three_failures_in_a_row_and_says_so_once():
    model = ScriptedModel(["no idea, sorry"])  # never a usable answer; the scripted backend counts its words as tokens
    mix = MixProposer(SearchProposer(seed=1), LLMProposer(model, max_retries=1), seed=5, bench_after=3)
    notices, fallbacks, first_meta = [], [], {}
    for r in range(6):
        mix.forced = "llm"  # as after a streak of rejections: the llm's turn, every round
        asked = len(model.calls)
        p = asyncio.run(mix.propose(context(r)))
        assert p.proposer == "search"
        notices += p.meta.get("notices", [])
        fallbacks.append((p.meta["failed_arms"], len(model.calls) - asked))
        first_meta = first_meta if r else p.meta
        mix.observe(p, accepted=False, score=0.1)
    assert fallbacks[:3] == [(["llm"], 2)] * 3  # asked (twice: one retry), failed, search answered
    assert p.meta["fallback_attempts"] == [] and first_meta["fallback_attempts"] == [2]
    assert first_meta["fallback_tokens"][0] > 0
    assert fallbacks[3:] == [([], 0)] * 3  # benched: not asked at all
    (notice,) = notices
    assert notice["kind"] == "proposer_benched" and notice["proposer"] == "llm" and notice["failures"] == 3
    assert "gets no more turns" in notice["message"]
    assert mix.live() == ["search"]
    clone = MixProposer(SearchProposer(), LLMProposer(model), seed=0)
    clone.load_state_dict(mix.state_dict())
    assert clone.live() == ["search"]


ERROR = "llm: no usable proposal after 2 attempts; last error: the answer has no RATIONALE line"


def _ledger(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    run = ledger.create_run("evolve", "p", {})
    error = ERROR
    ledger.add_candidate(id=f"{run}-r001", run_id=run, round=1, parent_id="seed", commit="abc", proposer="search",
                         summary="temperature 0.9 -> 0.2", status="rejected", decision=Decision("rejected", "no").to_json())
    ledger.set_state(run, "proposal/1", {"edits": {}, "rationale": "", "hypothesis": "", "proposer": "search",
                                         "meta": {"failed_arms": ["llm"], "fallback_errors": [error],
                                                  "fallback_tokens": [812],
                                                  "notices": [{"kind": "proposer_benched", "proposer": "llm",
                                                               "message": "mix: the llm proposer ... no more turns"}]}})
    attempts = [{"answer": "x", "error": "the answer has no RATIONALE line", "tokens": 40},
                {"answer": "y", "error": "the edits change nothing", "tokens": 45}]
    ledger.add_candidate(id=f"{run}-r002", run_id=run, round=2, parent_id="seed", proposer="llm",
                         summary="(no usable proposal)", rationale=error, status="failed",
                         decision=Decision("failed", error, attempts=attempts).to_json())
    return ledger, run


def test_log_show_and_the_ui_name_the_proposer_that_failed_why_and_its_cost(tmp_path):
    ledger, run = _ledger(tmp_path)
    rows = log_rows(ledger, run)
    col = LOG_COLUMNS.index("proposer")
    assert rows[0][col] == "search (llm failed, 812 tok)"
    assert rows[1][col] == "llm (failed, 85 tok)" and rows[1][LOG_COLUMNS.index("change")] == "(no usable proposal)"
    notes = failure_notes(ledger, run)
    assert notes[0].startswith("round 1 (r001): llm failed (1 attempt, 812 tokens): llm: no usable proposal")
    assert notes[1] == "round 2 (r002): llm failed (2 attempts, 85 tokens): the edits change nothing"
    shown = show_text(ledger, f"{run}-r001")
    assert "proposer failures:" in shown and "llm failed (1 attempt, 812 tokens): llm: no usable proposal" in shown
    assert "notice: mix: the llm proposer ... no more turns" in shown
    assert "llm failed (2 attempts, 85 tokens): the edits change nothing" in show_text(ledger, f"{run}-r002")
    detail = queries.run_detail(ledger, run)
    (failed_first,) = detail["candidates"][0]["proposer_failures"]
    assert failed_first == {"proposer": "llm", "reason": ERROR, "tokens": 812, "attempts": 1}
    assert proposer_failures(ledger, ledger.candidate(f"{run}-r001"))[0].reason == ERROR
    assert queries.candidate_detail(ledger, f"{run}-r002")["proposer_failures"][0]["tokens"] == 85
    ledger.close()


def test_a_notice_becomes_one_event_and_one_line_even_when_a_round_is_remembered_twice(tmp_path):
    ledger, run = _ledger(tmp_path)
    said = []
    row = ledger.candidate(f"{run}-r001")
    announce(ledger, row, said.append)
    announce(ledger, row, said.append)  # a resumed round remembers again
    assert said == ["mix: the llm proposer ... no more turns"]
    (event,) = ledger.events(run, "proposer_benched")
    assert event["data"]["proposer"] == "llm" and event["data"]["round"] == 1
    ledger.close()

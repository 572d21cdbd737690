"""The research command evaluator: reading metrics, and every way a trial can fail (crash, timeout,
no metric, NaN metric) recorded as a failure with its log tail, never as a score."""

import asyncio
import math

import pytest

from ratchet.research.command import CommandEvaluator, judge, trial_argv
from ratchet.research.config import ResearchSection, min_seeds
from ratchet.research.metric import read_metric
from ratchet.sandbox import SandboxResult


def spec(**kw) -> ResearchSection:
    return ResearchSection(**{"command": "python run.py", "metric": "loss", "budget_s": 20, **kw})


def run_script(code: str, **kw):
    """One trial of `code` (as run.py) in the real sandbox, with seed 7 on dev."""

    async def go(tmp):
        (tmp / "run.py").write_text(code)
        evaluator = CommandEvaluator.create(spec(**kw))
        return await evaluator.run_trial(tmp, "seed-0", 0, 7, "dev")

    return go


@pytest.fixture
def trial(tmp_path):
    def run(code: str, **kw):
        return asyncio.run(run_script(code, **kw)(tmp_path))

    return run


# -- reading a metric ---------------------------------------------------------------------------

def test_metric_from_json_line_last_one_wins():
    out = 'step 1\n{"loss": 3.5}\nnoise {"x": 1}\n{"loss": 2.25, "acc": 0.5}\n'
    r = read_metric(out, "loss")
    assert r.value == 2.25 and r.source == "json"


def test_metric_from_name_line_and_regex():
    assert read_metric("val_bpb: 0.9979\nval_bpb: 0.95\n", "val_bpb").value == 0.95
    assert read_metric("my_val_bpb: 3\n", "val_bpb").value is None  # a longer name is not this metric
    assert read_metric("final score=81.5%", "x", regex=r"score=([0-9.]+)%").value == 81.5
    assert read_metric("nothing here", "loss").found is False


def test_metric_nan_and_inf_are_found_but_not_finite():
    for text in ('{"loss": NaN}', "loss: nan", "loss = inf"):
        r = read_metric(text, "loss")
        assert r.found and not r.finite, text


def test_judge_is_a_pure_decision():
    ok = SandboxResult(returncode=0, stdout="loss: 1.5\n", stderr="", timed_out=False, seconds=1.0, reason=None)
    assert judge(ok, spec()) == ("ok", 1.5, "")
    crash = SandboxResult(returncode=None, stdout="loss: 1.5\n", stderr="", timed_out=True, seconds=20.0, reason="timeout")
    assert judge(crash, spec())[0] == "timeout"  # a metric printed before the kill does not count


def test_argv_placeholders_and_python():
    import sys

    argv = trial_argv(spec(command="python run.py --seed {seed} --split={split} --t {budget_s}"), 42, "holdout")
    assert argv == [sys.executable, "run.py", "--seed", "42", "--split=holdout", "--t", "20"]


def test_min_seeds_for_an_exact_paired_test():
    assert min_seeds(0.05) == 5 and min_seeds(0.1) == 4 and min_seeds(0.01) == 7


# -- failures in the real sandbox ---------------------------------------------------------------

def test_ok_trial_reads_metric_and_sees_its_seed(trial):
    r = trial("import os, json\nprint(json.dumps({'loss': 1.0 + int(os.environ['RATCHET_SEED'])}))\n")
    assert r.ok and r.value == 8.0 and r.seed == 7 and r.reason == ""


def test_crash_is_a_failure_with_the_traceback(trial):
    r = trial("print('loss: 0.1')\n1 / 0\n")
    assert r.status == "crash" and r.value is None
    assert "exited with status 1" in r.reason
    assert "ZeroDivisionError" in r.log_tail


def test_timeout_is_a_failure(trial):
    r = trial("import time\nprint('loss: 0.5', flush=True)\ntime.sleep(30)\n", budget_s=1.5)
    assert r.status == "timeout" and r.value is None
    assert "budget of 1.5s" in r.reason and r.seconds < 10
    assert "loss: 0.5" in r.log_tail


def test_no_metric_is_a_failure(trial):
    r = trial("print('training finished, forgot to print the metric')\n")
    assert r.status == "no_metric" and r.value is None
    assert "printed no metric" in r.reason and "forgot" in r.log_tail


def test_nan_metric_is_a_failure(trial):
    r = trial("import json\nprint(json.dumps({'loss': float('nan')}))\n")
    assert r.status == "nan_metric" and r.value is None and "not a finite number" in r.reason
    assert math.isnan(read_metric('{"loss": NaN}', "loss").value)


def test_trial_runs_in_a_private_copy(tmp_path):
    (tmp_path / "data.txt").write_text("original")
    r = asyncio.run(run_script("open('data.txt','w').write('changed')\nprint('loss: 1')\n")(tmp_path))
    assert r.ok and (tmp_path / "data.txt").read_text() == "original"


def test_cpu_is_measured_and_the_meter_line_is_not_in_the_log(trial):
    r = trial("import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\nprint('loss: 1')\n")
    assert r.ok and r.cpu_s is not None and r.cpu_s >= 0.25
    assert "RATCHET_TRIAL_CPU_S" not in r.log_tail


def test_signal_death_passes_through_the_meter(trial):
    r = trial("import os, signal\nprint('loss: 1', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\n")
    assert r.status == "crash" and "signal 9" in r.reason

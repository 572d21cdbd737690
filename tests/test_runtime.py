"""The episode runtime: the harness runs in the sandbox, asks for model calls and skills over a pipe."""

import asyncio

from ratchet.types import Task


def run(coro):
    return asyncio.run(coro)


def episode(harness, services, task=Task("t1", "Calculate 2 + 3."), seed=0):
    from ratchet.harness.runtime import run_episode

    return run(run_episode(harness, task, services, seed))


def test_model_call_skill_and_log(harness_factory, services):
    h = harness_factory(
        "def solve(task, ctx):\n"
        "    print('thinking about', task.id)\n"
        "    answer = ctx.llm(task.input)\n"
        "    check = ctx.skill('calculator', '2 + 3')\n"
        "    return f'{answer}/{check}'\n"
    )
    t = episode(h, services)
    assert t.output == "5/5" and t.error is None
    assert t.steps == 2 and len(t.messages) == 1 and t.tool_calls[0]["name"] == "calculator"
    assert "thinking about t1" in t.log
    assert t.tokens > 0


def test_params_set_sampling_defaults(harness_factory, services):
    params = '[temperature]\ntype = "float"\nrange = [0.0, 1.0]\nvalue = 0.9\n'
    h = harness_factory("def solve(task, ctx):\n    return ctx.llm(task.input)\n", params)
    t = episode(h, services)
    assert t.output == "6"  # the fake model is wrong when temperature > 0
    assert t.messages[0]["params"]["temperature"] == 0.9


def test_async_harness(harness_factory, services):
    h = harness_factory(
        "import asyncio\n"
        "async def solve(task, ctx):\n"
        "    a, b = await asyncio.gather(ctx.allm('1 + 1'), ctx.allm('2 + 2'))\n"
        "    return a + b\n"
    )
    assert episode(h, services).output == "24"


def test_python_skill_runs_in_its_own_sandbox(harness_factory, services):
    h = harness_factory("def solve(task, ctx):\n    return ctx.skill('python', 'print(6 * 7)')['stdout'].strip()\n")
    t = episode(h, services)
    assert t.output == "42" and t.tool_calls[0]["name"] == "python"


def test_step_budget_ends_episode(harness_factory, services):
    h = harness_factory(
        "def solve(task, ctx):\n"
        "    for i in range(100):\n"
        "        ctx.llm(f'{i} + 1')\n"
        "    return 'never'\n"
    )
    t = episode(h, services)
    assert t.output is None and t.error.startswith("budget") and t.failure_signal == "budget"
    assert t.steps == services.limits.max_steps


def test_loop_detector_ends_repeated_action(harness_factory, services):
    h = harness_factory("def solve(task, ctx):\n    while True:\n        ctx.llm('1 + 1')\n")
    t = episode(h, services)
    assert t.loop and t.failure_signal == "loop" and t.steps == 2


def test_timeout_kills_spinning_harness(harness_factory, services):
    services.limits = type(services.limits)(max_steps=6, max_tokens=500, timeout_s=1.5, loop_repeats=3)
    h = harness_factory("def solve(task, ctx):\n    while True:\n        pass\n")
    t = episode(h, services)
    assert t.error.startswith("timeout") and t.failure_signal == "timeout" and t.seconds < 6


class SlowModel:
    """Answers like the fake arithmetic model, after `delay_s`: a busy server's queue, or one still starting."""

    def __init__(self, inner, delay_s: float):
        self.inner, self.delay_s = inner, delay_s

    async def chat(self, messages, params):
        await asyncio.sleep(self.delay_s)
        return await self.inner.chat(messages, params)

    async def aclose(self) -> None:
        pass


def slow_model(services, timeout_s: float, delay_s: float) -> None:
    services.limits = type(services.limits)(max_steps=6, max_tokens=500, timeout_s=timeout_s, loop_repeats=3)
    services.model = SlowModel(services.model, delay_s)


def test_waits_on_the_model_do_not_count_against_the_timeout(harness_factory, services):
    slow_model(services, timeout_s=1.0, delay_s=0.8)
    h = harness_factory(
        "import asyncio\n"
        "async def solve(task, ctx):\n"
        "    a, b = await asyncio.gather(ctx.allm('1 + 1'), ctx.allm('2 + 2'))\n"  # two calls outstanding at once
        "    return a + b + await ctx.allm('1 + 2')\n"
    )
    t = episode(h, services)
    assert t.error is None and t.output == "243" and t.seconds > 1.6  # 1.6 s of waits, under 1 s of its own


def test_the_harness_own_time_between_model_calls_adds_up_to_the_timeout(harness_factory, services):
    slow_model(services, timeout_s=1.5, delay_s=0.5)
    h = harness_factory(
        "import time\n"
        "def solve(task, ctx):\n"
        "    for i in range(5):\n"
        "        ctx.llm(f'{i} + 1')\n"
        "        time.sleep(0.6)\n"  # 0.6 s of its own after each call: past 1.5 s in the third
        "    return 'never'\n"
    )
    t = episode(h, services)
    assert t.failure_signal == "timeout" and "own time" in t.error and len(t.messages) == 3


def test_the_clock_stops_while_any_model_call_is_outstanding():
    from ratchet.harness.clock import EpisodeClock

    now = [0.0]

    async def go():
        clock = EpisodeClock(5.0, now=lambda: now[0])
        now[0] = 1.0
        with clock.waiting():
            now[0] = 3.0
            with clock.waiting():
                now[0] = 4.0
            now[0] = 10.0
        assert clock.spent() == 1.0
        now[0] = 12.0
        assert clock.spent() == 3.0

    run(go())


def test_crash_and_missing_solve_are_recorded(harness_factory, services):
    t = episode(harness_factory("def solve(task, ctx):\n    raise ValueError('boom')\n"), services)
    assert "ValueError: boom" in t.error and "boom" in t.log
    t = episode(harness_factory("x = 1\n"), services)
    assert "no solve" in t.error


def test_disabled_skill_and_tool_error(harness_factory, services):
    params = '[skills]\nlibrary = ["calculator", "python"]\nenabled = ["calculator"]\n'
    h = harness_factory(
        "def solve(task, ctx):\n"
        "    try:\n"
        "        ctx.skill('calculator', '__import__(\"os\")')\n"
        "    except Exception as e:\n"
        "        bad = type(e).__name__\n"
        "    try:\n"
        "        ctx.skill('python', 'print(1)')\n"
        "    except Exception as e:\n"
        "        return bad + ':' + str(e)\n",
        params,
    )
    t = episode(h, services)
    assert t.output.startswith("ValueError:") and "not enabled" in t.output
    assert t.tool_errors == 1


def test_user_skill_from_skills_dir(harness_factory, services):
    params = '[skills]\nlibrary = ["double"]\nenabled = ["double"]\n'
    h = harness_factory("def solve(task, ctx):\n    return ctx.skill('double', 21)\n", params,
                        **{"skills__double.py": "def run(x):\n    return 2 * x\n"})
    assert episode(h, services).output == "42"


def test_harness_cannot_see_outside_files(harness_factory, services, tmp_path):
    secret = tmp_path / "gold.txt"
    secret.write_text("the answer")
    h = harness_factory(
        "import os\n"
        "def solve(task, ctx):\n"
        f"    return str(os.path.exists({str(secret)!r})) + ':' + str(sorted(os.listdir('.')))\n"
    )
    t = episode(h, services)
    assert t.output.startswith("False:") and "gold" not in t.output


def test_many_concurrent_episodes_are_independent(harness_factory, services):
    from ratchet.harness.runtime import run_episode

    h = harness_factory("def solve(task, ctx):\n    return ctx.llm(task.input)\n")
    tasks = [Task(f"t{i}", f"Calculate {i} + {i}.") for i in range(12)]

    async def all_():
        return await asyncio.gather(*(run_episode(h, t, services, seed=i) for i, t in enumerate(tasks)))

    outs = [t.output for t in run(all_())]
    assert outs == [str(2 * i) for i in range(12)]


def test_a_cancelled_episode_ends_at_once(harness_factory, services):
    from ratchet.harness.runtime import run_episode

    slow_model(services, timeout_s=30.0, delay_s=30.0)
    h = harness_factory("def solve(task, ctx):\n    return ctx.llm(task.input)\n")

    async def go():
        started = asyncio.get_running_loop().time()
        t = asyncio.create_task(run_episode(h, Task("t1", "Calculate 2 + 3."), services, 0))
        await asyncio.sleep(1.0)  # the harness is waiting on its model call
        t.cancel()
        try:
            await t
        except asyncio.CancelledError:
            pass
        return asyncio.get_running_loop().time() - started

    assert run(go()) < 5  # not the 30 s the model call would take

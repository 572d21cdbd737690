import asyncio
import sqlite3
import threading
import time

from ratchet.models.base import ChatModel, ModelError
from ratchet.models.cache import CachedModel, cache_key
from ratchet.types import Completion, SamplingParams

MSG = [{"role": "user", "content": "What is 2+3?"}]


class CountingModel:
    """Answers with a counter so a repeated answer can only come from the cache."""

    def __init__(self, name: str = "counting", delay_s: float = 0.0, fail: bool = False):
        self.name = name
        self.delay_s = delay_s
        self.fail = fail
        self.calls = 0
        self._lock = threading.Lock()

    async def chat(self, messages, params):
        with self._lock:
            self.calls += 1
            n = self.calls
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail:
            raise ModelError("boom")
        return Completion(texts=[f"reply {n}"] * params.n, prompt_tokens=11, completion_tokens=7 * params.n)

    async def aclose(self):
        pass


def test_cached_model_is_a_chat_model(tmp_path):
    assert isinstance(CachedModel(CountingModel(), tmp_path / "c.sqlite"), ChatModel)


def test_repeat_call_is_served_from_cache_with_token_counts(tmp_path):
    inner = CountingModel()
    model = CachedModel(inner, tmp_path / "c.sqlite")

    async def go():
        first = await model.chat(MSG, SamplingParams(seed=1))
        second = await model.chat(MSG, SamplingParams(seed=1))
        return first, second

    first, second = asyncio.run(go())
    assert inner.calls == 1
    assert (first.cached, second.cached) == (False, True)
    assert second.texts == first.texts == ["reply 1"]
    assert (second.prompt_tokens, second.completion_tokens) == (11, 7)


def test_key_depends_on_seed_params_messages_and_model(tmp_path):
    base = cache_key("m", MSG, SamplingParams(seed=1))
    assert base == cache_key("m", [dict(MSG[0])], SamplingParams(seed=1))
    assert base != cache_key("m", MSG, SamplingParams(seed=2))
    assert base != cache_key("m", MSG, SamplingParams(seed=1, max_tokens=5))
    assert base != cache_key("m", MSG, SamplingParams(seed=1, stop=("x",)))
    assert base != cache_key("other", MSG, SamplingParams(seed=1))
    assert base != cache_key("m", [{"role": "user", "content": "What is 2+4?"}], SamplingParams(seed=1))


def test_different_params_miss(tmp_path):
    inner = CountingModel()
    model = CachedModel(inner, tmp_path / "c.sqlite")

    async def go():
        a = await model.chat(MSG, SamplingParams(temperature=0.7, seed=1))
        b = await model.chat(MSG, SamplingParams(temperature=0.7, seed=2))
        return a, b

    a, b = asyncio.run(go())
    assert inner.calls == 2 and a.text != b.text


def test_cache_persists_across_instances(tmp_path):
    path = tmp_path / "c.sqlite"
    asyncio.run(CachedModel(CountingModel(), path).chat(MSG, SamplingParams()))
    inner = CountingModel()
    again = asyncio.run(CachedModel(inner, path).chat(MSG, SamplingParams()))
    assert inner.calls == 0 and again.cached and again.text == "reply 1"
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_unseeded_sampling_is_not_cached(tmp_path):
    inner = CountingModel()
    model = CachedModel(inner, tmp_path / "c.sqlite")

    async def go():
        for _ in range(2):
            await model.chat(MSG, SamplingParams(temperature=1.0))

    asyncio.run(go())
    assert inner.calls == 2 and len(model.store) == 0


def test_concurrent_identical_calls_share_one_model_call(tmp_path):
    inner = CountingModel(delay_s=0.2)
    model = CachedModel(inner, tmp_path / "c.sqlite")

    async def go():
        return await asyncio.gather(*(model.chat(MSG, SamplingParams()) for _ in range(5)))

    replies = asyncio.run(go())
    assert inner.calls == 1
    assert {r.text for r in replies} == {"reply 1"}
    assert sum(not r.cached for r in replies) == 1


def test_cancelled_follower_does_not_break_the_owner(tmp_path):
    inner = CountingModel(delay_s=0.2)
    model = CachedModel(inner, tmp_path / "c.sqlite")

    async def go():
        owner = asyncio.create_task(model.chat(MSG, SamplingParams()))
        await asyncio.sleep(0.01)
        follower = asyncio.create_task(model.chat(MSG, SamplingParams()))
        await asyncio.sleep(0.01)
        follower.cancel()
        return await owner

    assert asyncio.run(go()).text == "reply 1"


def test_identical_calls_from_threads_share_one_model_call(tmp_path):
    inner = CountingModel(delay_s=0.3)
    model = CachedModel(inner, tmp_path / "c.sqlite")
    out: list[Completion] = []

    def worker():
        out.append(asyncio.run(model.chat(MSG, SamplingParams())))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
        time.sleep(0.02)
    for t in threads:
        t.join()
    assert inner.calls == 1 and len(out) == 4 and {c.text for c in out} == {"reply 1"}


def test_failures_are_shared_but_not_stored(tmp_path):
    inner = CountingModel(delay_s=0.1, fail=True)
    model = CachedModel(inner, tmp_path / "c.sqlite")

    async def go():
        return await asyncio.gather(*(model.chat(MSG, SamplingParams()) for _ in range(3)), return_exceptions=True)

    results = asyncio.run(go())
    assert inner.calls == 1 and all(isinstance(r, ModelError) for r in results)
    assert len(model.store) == 0
    inner.fail = False
    assert asyncio.run(model.chat(MSG, SamplingParams())).text == "reply 2"


def test_n_samples_round_trip(tmp_path):
    model = CachedModel(CountingModel(), tmp_path / "c.sqlite")

    async def go():
        await model.chat(MSG, SamplingParams(n=3, temperature=0.5, seed=4))
        return await model.chat(MSG, SamplingParams(n=3, temperature=0.5, seed=4))

    again = asyncio.run(go())
    assert again.cached and again.texts == ["reply 1"] * 3 and again.completion_tokens == 21


def test_store_path_parent_is_created(tmp_path):
    path = tmp_path / "deep" / "dir" / "c.sqlite"
    CachedModel(CountingModel(), path)
    assert path.exists()

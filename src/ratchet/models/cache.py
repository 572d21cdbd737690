"""A content-addressed cache in front of any ChatModel.

The key is the sha256 of canonical JSON of (model name, sampling params incl. seed, messages, tools), so an
identical call, in this run or a later one, skips the model. Replies live in one SQLite table (WAL, so
several processes may share the file). Identical calls in flight at the same time share one model call.

A call with temperature > 0 and no seed asks for a fresh random sample each time; it is passed through
uncached, since replaying one sample for it would silently remove the randomness the caller asked for.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path

from ratchet.models.base import ChatModel, ask
from ratchet.types import Completion, Message, SamplingParams, Tools

_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    reply TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def cache_key(model_name: str, messages: list[Message], params: SamplingParams, tools: Tools | None = None) -> str:
    request: dict = {"model": model_name, "params": params.to_json(), "messages": messages}
    if tools is not None:  # absent otherwise: a call without tools keeps the key it always had
        request["tools"] = tools.to_json()
    canonical = json.dumps(
        request,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def is_cacheable(params: SamplingParams) -> bool:
    return params.temperature == 0.0 or params.seed is not None


class CompletionStore:
    """The SQLite table behind the cache; one connection guarded by a lock, usable from any thread."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a crash may lose a last reply, never corrupt
        self._db.execute(_SCHEMA)

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._db.execute("SELECT reply FROM completions WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        d = json.loads(row[0])
        return Completion(texts=d["texts"], prompt_tokens=d["prompt_tokens"], completion_tokens=d["completion_tokens"],
                          tool_calls=d.get("tool_calls") or [])

    def put(self, key: str, model: str, completion: Completion) -> None:
        reply = json.dumps(
            {
                "texts": completion.texts,
                "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens,
                **({"tool_calls": completion.tool_calls} if completion.tool_calls else {}),
            },
            ensure_ascii=False,
        )
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO completions (key, model, reply, created) VALUES (?, ?, ?, ?)",
                (key, model, reply, time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CachedModel:
    """A ChatModel that answers repeated identical calls from an SQLite cache."""

    def __init__(self, inner: ChatModel, path: Path | str):
        self.inner = inner
        self.name = inner.name
        self.store = CompletionStore(Path(path))
        # concurrent.futures, not asyncio, futures: callers on other threads or event loops may await them
        self._in_flight: dict[str, concurrent.futures.Future[Completion]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"CachedModel({self.inner!r}, path='{self.store.path}')"

    async def chat(self, messages: list[Message], params: SamplingParams, tools: Tools | None = None) -> Completion:
        if not is_cacheable(params):
            return await ask(self.inner, messages, params, tools)
        key = cache_key(self.name, messages, params, tools)
        with self._lock:
            shared = self._in_flight.get(key)
            if shared is None:
                stored = self.store.get(key)
                if stored is not None:
                    self.hits += 1
                    stored.cached = True
                    return stored
                owned: concurrent.futures.Future[Completion] = concurrent.futures.Future()
                self._in_flight[key] = owned
                self.misses += 1
            else:
                self.hits += 1
        if shared is not None:
            # shield: a cancelled follower must not cancel the shared future under the caller that owns it
            done = await asyncio.shield(asyncio.wrap_future(shared))
            return Completion(list(done.texts), done.prompt_tokens, done.completion_tokens, cached=True,
                              tool_calls=list(done.tool_calls))
        try:
            completion = await ask(self.inner, messages, params, tools)
            self.store.put(key, self.name, completion)
            if not owned.done():
                owned.set_result(completion)
        except BaseException as e:  # followers see the same failure; a failure is never stored
            if not owned.done():
                owned.set_exception(e)
            raise
        finally:
            with self._lock:
                self._in_flight.pop(key, None)
        return completion

    async def aclose(self) -> None:
        await self.inner.aclose()
        self.store.close()

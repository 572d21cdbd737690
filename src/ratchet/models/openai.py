"""Any OpenAI-compatible chat endpoint (vLLM, llama.cpp server, Ollama, OpenAI, ...) as a ChatModel.

Calls run concurrently up to `concurrency`; 429, 5xx, timeouts and connection errors are retried with
exponential backoff and jitter (a server's Retry-After wins when it asks for longer). The API key is read
from an environment variable, sent only in the Authorization header, and scrubbed from every message.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

from ratchet.models.base import ModelError, ModelUnavailable
from ratchet.types import Completion, Message, SamplingParams

RETRY_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))
_SNIPPET = 300  # characters of a server's reply quoted in an error


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 4
    backoff_s: float = 0.5  # first wait; doubles each retry
    max_backoff_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number `attempt` (0-based): full-jitter backoff, or Retry-After."""
        capped = min(self.max_backoff_s, self.backoff_s * (2**attempt))
        wait = random.uniform(capped / 2, capped)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_backoff_s))
        return wait


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: either a number or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def request_body(model: str, messages: list[Message], params: SamplingParams, n: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_tokens,
        "n": n,
    }
    if params.stop:
        body["stop"] = list(params.stop)
    if params.seed is not None:
        body["seed"] = params.seed
    return body


def parse_reply(data: Any, url: str) -> tuple[list[str], int, int]:
    """(texts, prompt_tokens, completion_tokens) from a chat/completions reply, or a ModelError saying what is off."""
    if not isinstance(data, dict):
        raise ModelError(f"{url} returned JSON that is not an object: {json.dumps(data)[:_SNIPPET]}")
    try:
        choices = data["choices"]
        texts = [c["message"]["content"] or "" for c in choices]
    except (KeyError, TypeError, IndexError):
        raise ModelError(f"{url} returned JSON without choices[].message.content: {json.dumps(data)[:_SNIPPET]}") from None
    if not texts:
        raise ModelError(f"{url} returned no choices")
    usage = data.get("usage") or {}
    return texts, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


class OpenAIModel:
    """A ChatModel over `{base_url}/chat/completions`."""

    def __init__(
        self,
        name: str,
        base_url: str,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 16,
        timeout_s: float = 120.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
    ):
        if not base_url or "://" not in base_url:
            raise ModelError(f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {base_url!r}")
        if concurrency < 1:
            raise ModelError(f"concurrency must be >= 1, got {concurrency}")
        self.name = name
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key_env = api_key_env
        self.retry = RetryPolicy(max_retries, backoff_s, max_backoff_s)
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self._key = os.environ.get(api_key_env) or None  # a local server (vLLM, llama.cpp) may need none
        # a client and a semaphore belong to one event loop; made on first use in the loop that calls
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: httpx.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None

    def _session(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._client is None or self._slots is None or self._loop is not loop:
            headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
            self._client = httpx.AsyncClient(
                headers=headers,
                timeout=httpx.Timeout(self.timeout_s),
                limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
            )
            self._slots = asyncio.Semaphore(self.concurrency)
            self._loop = loop
        return self._client, self._slots

    def __repr__(self) -> str:  # the key never appears, only where it comes from
        return f"OpenAIModel(name={self.name!r}, url={self.url!r}, api_key_env={self.api_key_env!r})"

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    async def chat(self, messages: list[Message], params: SamplingParams) -> Completion:
        texts: list[str] = []
        prompt_tokens = completion_tokens = 0
        # some servers (llama.cpp, Ollama) ignore n and return one choice: ask again for the rest
        while len(texts) < params.n:
            seed = None if params.seed is None else params.seed + len(texts)
            asked = SamplingParams(**{**params.to_json(), "seed": seed, "n": params.n - len(texts)})
            got, p_tok, c_tok = await self._post(request_body(self.name, messages, asked, asked.n))
            texts += got[: asked.n]
            prompt_tokens = prompt_tokens or p_tok
            completion_tokens += c_tok
        return Completion(texts=texts, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)

    async def _post(self, body: dict[str, Any]) -> tuple[list[str], int, int]:
        client, slots = self._session()
        last = ""
        for attempt in range(self.retry.max_retries + 1):
            retry_after: float | None = None
            async with slots:
                try:
                    response = await client.post(self.url, json=body)
                except httpx.TimeoutException:
                    last = f"timed out after {self.timeout_s:g} s"
                except httpx.TransportError as e:
                    last = f"connection error ({type(e).__name__}: {self._scrub(str(e))})"
                else:
                    if response.status_code == 200:
                        return self._decode(response)
                    last = f"HTTP {response.status_code}: {self._scrub(response.text[:_SNIPPET])}"
                    if response.status_code not in RETRY_STATUSES:
                        raise ModelError(f"{self.url} refused the request ({last}); check the model name, key and request")
                    retry_after = parse_retry_after(response.headers.get("retry-after"))
            if attempt < self.retry.max_retries:
                await asyncio.sleep(self.retry.delay(attempt, retry_after))
        raise ModelUnavailable(f"{self.url} failed after {self.retry.max_retries + 1} attempt(s); last: {last}")

    def _decode(self, response: httpx.Response) -> tuple[list[str], int, int]:
        try:
            data = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ModelUnavailable(
                f"{self.url} returned a reply that is not valid JSON: {self._scrub(response.text[:_SNIPPET])!r}"
            ) from None
        try:
            return parse_reply(data, self.url)
        except ModelError as e:
            raise ModelUnavailable(self._scrub(str(e))) from None

    async def aclose(self) -> None:
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = self._slots = self._loop = None

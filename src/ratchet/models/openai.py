"""Any OpenAI-compatible chat endpoint (vLLM, llama.cpp server, Ollama, OpenAI, ...) as a ChatModel.

Requests go through the official `openai` SDK (`AsyncOpenAI`): its timeouts, its retries of 408, 409, 429,
5xx, timeouts and connection errors, with ratchet's backoff (exponential with jitter; a server's Retry-After
wins when it asks for longer, capped at `max_backoff_s`). Calls run concurrently up to `concurrency`. The
API key is read from an environment variable, sent only in the Authorization header, and scrubbed from
every message. The reply is decoded here (not by the SDK's models), so a server replying garbage gets an
error that quotes it.

Tools (`chat(..., tools=Tools(...))`) go as the API's `tools` and `tool_choice` (`tool_calling = "native"`,
the default; vLLM answers a required or named choice by schema-guided decoding, so the call always parses),
or through the prompt convention of models/tool_prompt.py (`tool_calling = "prompt"`, for servers without
tool support).
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

import httpx2  # the HTTP library the openai SDK is built on (its fork of httpx)
import openai

from ratchet.models import tool_prompt
from ratchet.models.base import ModelError, ModelUnavailable
from ratchet.types import Completion, Message, SamplingParams, Tools

RETRY_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))
_SNIPPET = 300  # characters of a server's reply quoted in an error
_SDK_KEY = "unused"  # the SDK insists on a key of its own; it is never sent (see OpenAIModel._session)


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


def request_kwargs(params: SamplingParams, n: int) -> dict[str, Any]:
    """`chat.completions.create` arguments for `params`, one to one; what the OpenAI API lacks goes in extra_body."""
    kwargs: dict[str, Any] = {"temperature": params.temperature, "top_p": params.top_p, "max_tokens": params.max_tokens, "n": n}
    if params.stop:
        kwargs["stop"] = list(params.stop)
    if params.seed is not None:
        kwargs["seed"] = params.seed
    extras = params.extras()
    for name in ("frequency_penalty", "presence_penalty"):
        if name in extras:
            kwargs[name] = extras.pop(name)
    if extras:  # top_k, repetition_penalty: vLLM's sampling extensions
        kwargs["extra_body"] = extras
    return kwargs


def tool_kwargs(tools: Tools) -> dict[str, Any]:
    choice = {"type": "function", "function": {"name": tools.named}} if tools.named else tools.choice
    return {"tools": list(tools.functions), "tool_choice": choice}


@dataclass
class Reply:
    texts: list[str]
    tool_calls: list[dict[str, Any]]  # of the first choice, OpenAI shape
    prompt_tokens: int
    completion_tokens: int


def _tool_calls(message: dict[str, Any]) -> list[dict[str, Any]]:
    calls = []
    for i, c in enumerate(message.get("tool_calls") or []):
        fn = c.get("function") or {}
        args = fn.get("arguments")
        calls.append({"id": str(c.get("id") or f"call_{i}"), "type": "function",
                      "function": {"name": str(fn.get("name") or ""),
                                   "arguments": args if isinstance(args, str) else json.dumps(args or {})}})
    return calls


def parse_reply(data: Any, url: str) -> Reply:
    """Texts, tool calls and token counts from a chat/completions reply, or a ModelError saying what is off."""
    if not isinstance(data, dict):
        raise ModelError(f"{url} returned JSON that is not an object: {json.dumps(data)[:_SNIPPET]}")
    try:
        choices = data["choices"]
        texts = [c["message"]["content"] or "" for c in choices]
        calls = _tool_calls(choices[0]["message"]) if choices else []
    except (KeyError, TypeError, IndexError, AttributeError):
        raise ModelError(f"{url} returned JSON without choices[].message.content: {json.dumps(data)[:_SNIPPET]}") from None
    if not texts:
        raise ModelError(f"{url} returned no choices")
    usage = data.get("usage") or {}
    return Reply(texts, calls, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))


class _Client(openai.AsyncOpenAI):
    """AsyncOpenAI whose retries wait as ratchet's RetryPolicy says (the SDK's own waits are fixed constants)."""

    retry_policy = RetryPolicy()

    def _calculate_retry_timeout(self, remaining_retries: int, options: Any, response_headers: Any = None) -> float:
        attempt = max(0, options.get_max_retries(self.max_retries) - remaining_retries)
        header = response_headers.get("retry-after") if response_headers is not None else None
        return self.retry_policy.delay(attempt, parse_retry_after(header))

    def _should_retry(self, response: httpx2.Response) -> bool:
        # the SDK gives up on a Retry-After over two minutes; ratchet waits max_backoff_s and tries again
        said = response.headers.get("x-should-retry")
        return said == "true" if said in ("true", "false") else response.status_code in RETRY_STATUSES


def _attempts(request: Any, default: int) -> int:
    """How many attempts the SDK made, from the retry count it stamps on each request."""
    try:
        return int(request.headers.get("x-stainless-retry-count")) + 1
    except (AttributeError, TypeError, ValueError):
        return default


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
        tool_calling: str = "native",
    ):
        if not base_url or "://" not in base_url:
            raise ModelError(f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {base_url!r}")
        if concurrency < 1:
            raise ModelError(f"concurrency must be >= 1, got {concurrency}")
        if tool_calling not in ("native", "prompt"):
            raise ModelError(f'tool_calling must be "native" or "prompt", got {tool_calling!r}')
        self.tool_calling = tool_calling
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.api_key_env = api_key_env
        self.retry = RetryPolicy(max_retries, backoff_s, max_backoff_s)
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self._key = os.environ.get(api_key_env) or None  # a local server (vLLM, llama.cpp) may need none
        # a client and a semaphore belong to one event loop; made on first use in the loop that calls
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: _Client | None = None
        self._slots: asyncio.Semaphore | None = None

    def _session(self) -> tuple[_Client, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._client is None or self._slots is None or self._loop is not loop:
            limits = httpx2.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
            # The key rides on the HTTP client, which sends the header as written (`Authorization`; the SDK
            # lowercases the headers it makes), and each request omits the SDK's own (see _post); no key, no header.
            headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
            client = _Client(
                api_key=_SDK_KEY,
                base_url=self.base_url,
                timeout=self.timeout_s,
                max_retries=self.retry.max_retries,
                http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=self.timeout_s, headers=headers),
            )
            client.retry_policy = self.retry
            self._client, self._slots, self._loop = client, asyncio.Semaphore(self.concurrency), loop
        return self._client, self._slots

    def __repr__(self) -> str:  # the key never appears, only where it comes from
        return f"OpenAIModel(name={self.name!r}, url={self.url!r}, api_key_env={self.api_key_env!r})"

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    async def chat(self, messages: list[Message], params: SamplingParams, tools: Tools | None = None) -> Completion:
        extra: dict[str, Any] = {}
        if tools is not None and self.tool_calling == "native":
            extra = tool_kwargs(tools)
        elif self.tool_calling == "prompt":
            messages = tool_prompt.plain_messages(messages, tools)
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        prompt_tokens = completion_tokens = 0
        # vLLM refuses n greedy completions ("n must be 1 when using greedy sampling"): ask for one, repeat it
        wanted = params.distinct_samples
        # some servers (llama.cpp, Ollama) ignore n and return one choice: ask again for the rest
        while len(texts) < wanted:
            seed = None if params.seed is None else params.seed + len(texts)
            asked = SamplingParams(**{**params.to_json(), "seed": seed, "n": wanted - len(texts)})
            reply = await self._post(messages, {**request_kwargs(asked, asked.n), **extra})
            calls = calls if texts else reply.tool_calls
            texts += reply.texts[: asked.n]
            prompt_tokens = prompt_tokens or reply.prompt_tokens
            completion_tokens += reply.completion_tokens
        texts *= params.n // wanted
        completion = Completion(texts=texts, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                                tool_calls=calls)
        return tool_prompt.read_reply(completion, tools) if tools is not None and not extra else completion

    async def _post(self, messages: list[Message], kwargs: dict[str, Any]) -> Reply:
        client, slots = self._session()
        kwargs["extra_headers"] = {"Authorization": openai.omit}  # the HTTP client's, if any, is sent instead
        tries = self.retry.max_retries + 1
        async with slots:
            try:
                raw = await client.chat.completions.with_raw_response.create(model=self.name, messages=messages, **kwargs)
            except openai.APIStatusError as e:
                last = f"HTTP {e.status_code}: {self._scrub(e.response.text[:_SNIPPET])}"
                if e.status_code not in RETRY_STATUSES:
                    raise ModelError(f"{self.url} refused the request ({last}); check the model name, key and request") from None
                tries = _attempts(e.response.request, tries)
            except openai.APITimeoutError:
                last = f"timed out after {self.timeout_s:g} s"
            except openai.APIConnectionError as e:
                cause = e.__cause__ or e
                last = f"connection error ({type(cause).__name__}: {self._scrub(str(cause))})"
            else:
                return self._decode(raw.http_response)
        raise ModelUnavailable(f"{self.url} failed after {tries} attempt(s); last: {last}")

    def _decode(self, response: httpx2.Response) -> Reply:
        try:
            data = json.loads(response.text)
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
            await self._client.close()
        self._client = self._slots = self._loop = None

"""OpenAIModel against a real HTTP server on loopback whose replies each test scripts."""

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ratchet.models.base import ChatModel, ModelError
from ratchet.models.openai import OpenAIModel, RetryPolicy, parse_retry_after
from ratchet.types import SamplingParams

MSG = [{"role": "user", "content": "hi"}]
SECRET = "sk-test-SECRET-0123456789"


def ok_body(texts=("hello",), prompt_tokens=3, completion_tokens=2) -> bytes:
    return json.dumps(
        {
            "choices": [{"index": i, "message": {"role": "assistant", "content": t}} for i, t in enumerate(texts)],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
        }
    ).encode()


@dataclass
class Reply:
    status: int = 200
    body: bytes = field(default_factory=ok_body)
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class FakeServer:
    """Serves replies from `script(request_index)`; records each request's headers and JSON body."""

    script: Callable[[int], Reply]
    requests: list[dict] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    index = len(server.requests)
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                reply = server.script(index)
                try:
                    time.sleep(reply.delay_s)
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)
                finally:
                    with server.lock:
                        server.in_flight -= 1

        return Handler


@pytest.fixture
def serve():
    servers = []

    def start(script: Callable[[int], Reply]) -> tuple[FakeServer, str]:
        fake = FakeServer(script)
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(httpd)
        return fake, f"http://127.0.0.1:{httpd.server_address[1]}/v1"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def make(url: str, **kw) -> OpenAIModel:
    kw.setdefault("backoff_s", 0.01)
    kw.setdefault("max_backoff_s", 0.05)
    return OpenAIModel("test-model", url, **kw)


def chat(model: OpenAIModel, params: SamplingParams = SamplingParams()):
    async def go():
        try:
            return await model.chat(MSG, params)
        finally:
            await model.aclose()

    return asyncio.run(go())


def test_is_a_chat_model(serve):
    _, url = serve(lambda i: Reply())
    assert isinstance(make(url), ChatModel)


def test_sends_sampling_params_and_parses_reply(serve, monkeypatch):
    monkeypatch.setenv("TEST_KEY", SECRET)
    fake, url = serve(lambda i: Reply(body=ok_body(("a", "b"), 5, 9)))
    params = SamplingParams(temperature=0.5, top_p=0.9, max_tokens=17, n=2, stop=("END",), seed=3)
    out = chat(make(url, api_key_env="TEST_KEY"), params)
    assert out.texts == ["a", "b"] and (out.prompt_tokens, out.completion_tokens) == (5, 9)
    req = fake.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == f"Bearer {SECRET}"
    body = req["body"]
    assert body["model"] == "test-model" and body["messages"] == MSG
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["n"]) == (0.5, 0.9, 17, 2)
    assert body["stop"] == ["END"] and body["seed"] == 3


def test_server_ignoring_n_gets_asked_again(serve):
    fake, url = serve(lambda i: Reply(body=ok_body((f"s{i}",))))
    out = chat(make(url), SamplingParams(n=3, temperature=1.0, seed=10))
    assert out.texts == ["s0", "s1", "s2"]
    assert [r["body"]["seed"] for r in fake.requests] == [10, 11, 12]


def test_greedy_n_is_one_request_repeated(serve):
    """vLLM refuses n > 1 at temperature 0 (HTTP 400); greedy completions are identical, so one is asked for."""
    fake, url = serve(lambda i: Reply(body=ok_body(("same",), 4, 6)))
    out = chat(make(url), SamplingParams(n=5, temperature=0.0))
    assert out.texts == ["same"] * 5 and out.completion_tokens == 6  # the tokens generated, once
    assert [r["body"]["n"] for r in fake.requests] == [1]


def test_retries_429_then_succeeds_honouring_retry_after(serve):
    fake, url = serve(lambda i: Reply(429, b'{"error":"slow down"}', {"Retry-After": "0.3"}) if i == 0 else Reply())
    t0 = time.perf_counter()
    out = chat(make(url, max_backoff_s=1.0))
    assert out.text == "hello" and len(fake.requests) == 2
    assert time.perf_counter() - t0 >= 0.3  # waited as asked, not the 0.01 s backoff


def test_retry_after_capped_by_max_backoff(serve):
    fake, url = serve(lambda i: Reply(429, b"{}", {"Retry-After": "3600"}) if i == 0 else Reply())
    t0 = time.perf_counter()
    chat(make(url, max_backoff_s=0.1))
    assert time.perf_counter() - t0 < 5


def test_persistent_500_gives_clear_error_after_last_retry(serve):
    fake, url = serve(lambda i: Reply(503, b'{"error":"overloaded"}'))
    with pytest.raises(ModelError) as err:
        chat(make(url, max_retries=2))
    assert len(fake.requests) == 3
    msg = str(err.value)
    assert f"{url}/chat/completions" in msg and "503" in msg and "3 attempt" in msg and "overloaded" in msg


def test_client_error_is_not_retried(serve):
    fake, url = serve(lambda i: Reply(400, b'{"error":"bad model"}'))
    with pytest.raises(ModelError, match="400"):
        chat(make(url, max_retries=3))
    assert len(fake.requests) == 1


def test_malformed_json_is_a_clear_error(serve):
    _, url = serve(lambda i: Reply(body=b"<html>not json"))
    with pytest.raises(ModelError, match="not valid JSON.*not json"):
        chat(make(url))


def test_json_of_the_wrong_shape_is_a_clear_error(serve):
    _, url = serve(lambda i: Reply(body=b'{"result": "hello"}'))
    with pytest.raises(ModelError, match=r"choices\[\]\.message\.content"):
        chat(make(url))


def test_slow_server_times_out_and_is_retried(serve):
    fake, url = serve(lambda i: Reply(delay_s=1.0) if i == 0 else Reply())
    assert chat(make(url, timeout_s=0.2, max_retries=1)).text == "hello"
    assert len(fake.requests) == 2


def test_timeout_on_every_attempt_names_the_timeout(serve):
    _, url = serve(lambda i: Reply(delay_s=1.0))
    with pytest.raises(ModelError, match=r"2 attempt.*timed out after 0.2 s"):
        chat(make(url, timeout_s=0.2, max_retries=1))


def test_connection_refused_is_retried_then_reported():
    model = make("http://127.0.0.1:9/v1", max_retries=1, timeout_s=1.0)
    with pytest.raises(ModelError, match=r"127\.0\.0\.1:9/v1/chat/completions.*connection error"):
        chat(model)


def test_concurrency_is_bounded(serve):
    fake, url = serve(lambda i: Reply(delay_s=0.1))
    model = make(url, concurrency=3)

    async def go():
        try:
            return await asyncio.gather(*(model.chat(MSG, SamplingParams()) for _ in range(12)))
        finally:
            await model.aclose()

    t0 = time.perf_counter()
    out = asyncio.run(go())
    assert len(out) == 12 and fake.max_in_flight == 3
    assert time.perf_counter() - t0 < 12 * 0.1  # it did run concurrently


def test_key_never_in_errors_or_repr(serve, monkeypatch, caplog):
    monkeypatch.setenv("TEST_KEY", SECRET)
    # a server that echoes the key back must not leak it through our error messages
    _, url = serve(lambda i: Reply(500, json.dumps({"error": f"bad key {SECRET}"}).encode()))
    model = make(url, api_key_env="TEST_KEY", max_retries=1)
    assert SECRET not in repr(model) and "TEST_KEY" in repr(model)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ModelError) as err:
        chat(model)
    assert SECRET not in str(err.value) and "***" in str(err.value)
    assert SECRET not in repr(err.value)
    assert SECRET not in caplog.text


def test_key_never_in_malformed_json_error(serve, monkeypatch):
    monkeypatch.setenv("TEST_KEY", SECRET)
    _, url = serve(lambda i: Reply(body=f"oops {SECRET}".encode()))
    with pytest.raises(ModelError) as err:
        chat(make(url, api_key_env="TEST_KEY"))
    assert SECRET not in str(err.value)


def test_no_key_sends_no_authorization(serve, monkeypatch):
    monkeypatch.delenv("TEST_KEY", raising=False)
    fake, url = serve(lambda i: Reply())
    chat(make(url, api_key_env="TEST_KEY"))
    assert "Authorization" not in fake.requests[0]["headers"]


def test_usable_from_two_event_loops(serve):
    _, url = serve(lambda i: Reply())
    model = make(url)
    assert asyncio.run(model.chat(MSG, SamplingParams())).text == "hello"
    assert asyncio.run(model.chat(MSG, SamplingParams())).text == "hello"


def test_bad_base_url_is_rejected():
    with pytest.raises(ModelError, match="base_url"):
        OpenAIModel("m", "localhost:8000")


def test_retry_after_parsing_and_backoff_growth():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    policy = RetryPolicy(max_retries=5, backoff_s=1.0, max_backoff_s=8.0)
    for attempt, cap in [(0, 1.0), (1, 2.0), (3, 8.0), (6, 8.0)]:
        waits = [policy.delay(attempt, None) for _ in range(50)]
        assert all(cap / 2 <= w <= cap for w in waits) and len(set(waits)) > 1  # jittered
    assert policy.delay(0, 5.0) == 5.0

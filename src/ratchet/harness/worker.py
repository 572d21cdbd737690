"""The sandbox side of an episode: imports the harness program and runs `solve(task, ctx)`.

This file is copied into the sandbox next to the harness files and run there by a bare Python, so it
imports nothing but the standard library, and asyncio only for an async harness: it is a third of the
start-up time of every episode. It talks to the parent over its original stdout/stdin with
one JSON object per line; everything the harness prints goes to stderr, which the parent keeps as log.
Model calls and the python skill are served by the parent, so batching, caching, budgets and secrets
stay outside the box.
"""

import ast
import importlib.util
import inspect
import json
import operator
import os
import sys
import threading
import traceback
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
# harness params that are also sampling parameters: a knob with one of these names sets it on every model call
_SAMPLING_KNOBS = ("temperature", "top_p", "max_tokens", "top_k", "frequency_penalty", "presence_penalty",
                   "repetition_penalty")


class EpisodeError(RuntimeError):
    """The parent refused a request (budget spent, loop detected, unknown skill...)."""


class _Channel:
    """Request/reply over the parent pipe; thread-safe so async harnesses may call concurrently."""

    def __init__(self, out, inp):
        self._out, self._in = out, inp
        self._lock = threading.Lock()
        self._pending: dict[int, Future] = {}
        self._next = 0
        threading.Thread(target=self._read_replies, daemon=True).start()

    def _read_replies(self):
        for line in self._in:
            msg = json.loads(line)
            fut = self._pending.pop(msg.get("id"), None)
            if fut is not None:
                fut.set_result(msg)
        for fut in list(self._pending.values()):  # parent went away
            fut.set_result({"ok": False, "error": "parent closed the channel"})

    def send(self, msg):
        with self._lock:
            self._out.write(json.dumps(msg) + "\n")
            self._out.flush()

    def request(self, msg) -> Future:
        fut: Future = Future()
        with self._lock:
            self._next += 1
            msg = dict(msg, id=self._next)
            self._pending[self._next] = fut
        self.send(msg)
        return fut

    def call(self, msg):
        reply = self.request(msg).result()
        if not reply.get("ok"):
            raise EpisodeError(reply.get("error", "request refused"))
        return reply


_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}


def calculator(expression: str):
    """Evaluate arithmetic on numbers only (no names, no calls), with a bound on exponent size."""

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 64:
                raise ValueError("exponent too large")
            return _BINOPS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](ev(node.operand))
        raise ValueError(f"not allowed in a calculator expression: {ast.dump(node)[:60]}")

    value = ev(ast.parse(str(expression).replace("^", "**").replace("×", "*").replace("÷", "/"), mode="eval"))
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value


class Context:
    """What a harness program gets: model calls, params, prompts, rules, skills, budget."""

    def __init__(self, channel, setup):
        self._ch = channel
        self.params = dict(setup["params"])
        self.skills_enabled = list(setup["skills_enabled"])
        self.rules = (HERE / "rules.md").read_text() if (HERE / "rules.md").exists() else ""
        self.budget = SimpleNamespace(**setup["budget"])
        self._user_skills = {}
        self._task_id = setup["task"]["id"]
        self._demos = list(setup.get("demos") or [])  # the run's demo pool: verified train examples only

    # -- model calls -------------------------------------------------------------------------
    def _request_llm(self, prompt, system, n, sampling, tools=None, tool_choice="auto"):
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        if system:
            messages = [{"role": "system", "content": system}] + messages
        params = {k: self.params[k] for k in _SAMPLING_KNOBS if k in self.params}
        params.update(sampling)
        params["n"] = n
        msg = {"op": "llm", "messages": messages, "params": params}
        if tools:
            specs = [self.tool_spec(t) if isinstance(t, str) else t for t in tools]
            msg["tools"] = {"functions": specs, "choice": tool_choice}
        return msg

    def _absorb(self, reply):
        self.budget.steps_left = reply.get("steps_left", self.budget.steps_left)
        self.budget.tokens_left = reply.get("tokens_left", self.budget.tokens_left)
        return reply["texts"]

    def llm(self, prompt, system=None, tools=None, tool_choice="auto", **sampling):
        """One completion for a prompt string or a list of chat messages. With `tools` (enabled skills' names or
        OpenAI function specs; `tool_choice` "auto", "required" or a tool's name), the assistant message,
        {"role", "content", "tool_calls"}, to append to the conversation; run its calls with ctx.call."""
        reply = self._ch.call(self._request_llm(prompt, system, 1, sampling, tools, tool_choice))
        return self._assistant(reply, tools)

    def _assistant(self, reply, tools):
        text = self._absorb(reply)[0]
        return {"role": "assistant", "content": text, "tool_calls": reply.get("tool_calls") or []} if tools else text

    def sample(self, prompt, n, system=None, **sampling) -> list:
        """n completions of the same prompt (one step of the budget)."""
        return self._absorb(self._ch.call(self._request_llm(prompt, system, n, sampling)))

    async def allm(self, prompt, system=None, tools=None, tool_choice="auto", **sampling):
        import asyncio  # already loaded: only a running event loop can call this

        fut = self._ch.request(self._request_llm(prompt, system, 1, sampling, tools, tool_choice))
        reply = await asyncio.wrap_future(fut)
        if not reply.get("ok"):
            raise EpisodeError(reply.get("error", "request refused"))
        return self._assistant(reply, tools)

    # -- tool calling (tool_calls.py) -----------------------------------------------------------------
    def tool_spec(self, name):
        """The OpenAI function spec of the enabled skill `name`."""
        if name not in self.skills_enabled:
            raise EpisodeError(f"tool {name!r} is not an enabled skill; enabled: {self.skills_enabled}")
        builtin = name in _tool_calls().BUILTIN
        return _tool_calls().spec_for(name, None if builtin else self._load_user_skill(name))

    def call(self, tool_call):
        """Run a tool call of ctx.llm's reply as the skill it names; the tool message to append. A call that
        cannot run gives a message starting "ERROR:" (a tool error of the episode), not an exception."""
        tc = _tool_calls()
        call_id = str(tool_call.get("id", "")) if isinstance(tool_call, dict) else ""
        try:
            name, kwargs = tc.arguments_of(tool_call)
            if name not in self.skills_enabled:
                raise ValueError(f"there is no tool {name!r}; the tools are the enabled skills {self.skills_enabled}")
        except ValueError as e:
            self._ch.call({"op": "tool", "name": "?", "args": [repr(tool_call)[:300]], "error": str(e), "call_id": call_id})
            return tc.tool_message(tool_call, f"ERROR: {e}")
        try:
            result = self._skill(name, [], kwargs, call_id)
        except EpisodeError:
            raise  # the budget or the parent ended the episode
        except Exception as e:  # recorded as a tool error by _local_tool
            return tc.tool_message(tool_call, f"ERROR: {type(e).__name__}: {e}")
        return tc.tool_message(tool_call, tc.result_text(name, result))

    # -- generic techniques (techniques.py; docs/harness.md) -----------------------------------------
    def demos(self, k):
        """Up to k (input, output) pairs from the demo pool: train tasks the seed solved, verified by the suite."""
        pool = [d for d in self._demos if d.get("task_id") != self._task_id]
        return [(d["input"], d["output"]) for d in pool[:max(0, int(k))]]

    def demo_messages(self, k, template="question"):
        """The first k demos as user/assistant turns, each question written with prompts/TEMPLATE."""
        turns = []
        for question, output in self.demos(k):
            turns += [{"role": "user", "content": self.prompt(template, question=question)},
                      {"role": "assistant", "content": output}]
        return turns

    def extract(self, text, strategy=None):
        """The answer in a reply by the `extract` knob's strategy (or `strategy`); None when there is none."""
        p = self.params
        return _techniques().extract(text, strategy or p.get("extract", "raw"), p.get("answer_marker", "Answer:"),
                                     p.get("answer_regex", ""))

    def answer(self, messages, reply, system=None, retries=None):
        """The reply's answer. When it fails the format check, ask again with the error shown, up to `retries`
        times (default: the `format_retries` knob); None when every try failed."""
        retries = int(self.params.get("format_retries", 0) if retries is None else retries)
        history = [{"role": "user", "content": messages}] if isinstance(messages, str) else list(messages)
        found = self.extract(reply)
        while found is None and retries > 0:
            retries -= 1
            p = self.params
            error = _techniques().format_error(p.get("extract", "raw"), p.get("answer_marker", "Answer:"),
                                               p.get("answer_regex", ""))
            history += [{"role": "assistant", "content": reply},
                        {"role": "user", "content": f"Your reply could not be read: {error}. Reply again."}]
            reply = self.llm(history, system=system)
            found = self.extract(reply)
        return found

    def vote(self, answers):
        """Self-consistency: the most common answer (after normalising case, spacing, numbers); None if none."""
        return _techniques().majority(answers)

    # -- prompts, skills, logging --------------------------------------------------------------
    def prompt(self, name, **fields) -> str:
        for suffix in ("", ".md", ".txt"):
            path = HERE / "prompts" / f"{name}{suffix}"
            if path.is_file():
                text = path.read_text()
                return text.format_map(fields) if fields else text
        raise EpisodeError(f"no prompt named {name!r} in prompts/")

    def skill(self, name, *args, **kwargs):
        return self._skill(name, list(args), kwargs, None)

    def _skill(self, name, args, kwargs, call_id):
        if name not in self.skills_enabled:
            raise EpisodeError(f"skill {name!r} is not enabled; enabled: {self.skills_enabled}")
        if name == "calculator":
            return self._local_tool(name, calculator, args, kwargs, call_id)
        if name in ("python", "memory"):
            return self._ch.call({"op": "skill", "name": name, "args": args, "kwargs": kwargs, "call_id": call_id})["result"]
        return self._local_tool(name, self._load_user_skill(name), args, kwargs, call_id)

    def _local_tool(self, name, fn, args, kwargs, call_id=None):
        shown = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
        try:
            result = fn(*args, **kwargs)
            self._ch.call({"op": "tool", "name": name, "args": shown, "result": repr(result), "call_id": call_id})
            return result
        except EpisodeError:
            raise
        except Exception as e:  # a tool error is a process signal, not a crash of the episode
            self._ch.call({"op": "tool", "name": name, "args": shown, "error": repr(e), "call_id": call_id})
            raise

    def _load_user_skill(self, name):
        if name not in self._user_skills:
            path = HERE / "skills" / f"{name}.py"
            if not path.is_file():
                raise EpisodeError(f"skill {name!r} has no file skills/{name}.py")
            self._user_skills[name] = _import(path, f"skill_{name}").run
        return self._user_skills[name]

    def log(self, *parts):
        print(*parts, file=sys.stderr)


_LIBRARY = {}


def _library(name):
    if name not in _LIBRARY:  # loaded on first use: most episodes of a plain harness never need them
        _LIBRARY[name] = _import(HERE / f"{name}.py", name)
    return _LIBRARY[name]


def _techniques():
    return _library("techniques")


def _tool_calls():
    return _library("tool_calls")


def _import(path: Path, module_name: str):
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    proto_out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the harness's prints go to stderr, never into the protocol
    sys.stdout = sys.stderr
    setup = json.loads(sys.stdin.readline())  # before the reader thread takes over stdin
    channel = _Channel(proto_out, sys.stdin)
    task = SimpleNamespace(**setup["task"])
    output, error = None, None
    try:
        ctx = Context(channel, setup)
        program = _import(HERE / "harness.py", "harness")
        if not hasattr(program, "solve"):
            raise EpisodeError("harness.py defines no solve(task, ctx)")
        result = program.solve(task, ctx)
        if inspect.isawaitable(result):
            import asyncio

            result = asyncio.run(_await(result))
        output = None if result is None else str(result)
    except BaseException as e:  # report everything, including SystemExit, as the episode's error
        error = f"{type(e).__name__}: {e}"
        traceback.print_exc()
    channel.send({"op": "done", "output": output, "error": error})


async def _await(awaitable):
    return await awaitable


if __name__ == "__main__":
    main()

"""Tool calling inside an episode: the function specs of skills, and tool calls turned into skill calls.

Copied into the sandbox next to `worker.py` (standard library only) and used through `ctx`:

    reply = ctx.llm(messages, tools=["python"])        # an assistant message: content and tool_calls (OpenAI shape)
    messages.append(reply)
    for call in reply["tool_calls"]:
        messages.append(ctx.call(call))                # runs the skill, returns {"role": "tool", ...}

A tool is an enabled skill's name (its spec is built here: the built-in skills have fixed ones, a skill file's
`run` signature and docstring give the rest) or a spec dict of the OpenAI shape, which `ctx.call` can run only
when it names an enabled skill. A call that cannot run (unknown tool, arguments that are not a JSON object,
the skill raising) returns a tool message starting "ERROR:" and counts as a tool error of the episode; it
never ends the episode, so the model can read the error and try again.
"""

import inspect
import json

BUILTIN = {
    "python": ("Run a Python program in a sandbox and return what it printed (stdout; stderr and the exit code "
               "when it failed).", {"code": ("string", "the program's source")}),
    "calculator": ("Evaluate an arithmetic expression (+ - * / // % ** and parentheses).",
                   {"expression": ("string", "e.g. (3 + 4) * 2")}),
    "memory": ("Recall lessons from earlier runs relevant to a query.", {"query": ("string", "what to recall")}),
}
_JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string", list: "array", dict: "object"}


def _function(name, description, properties, required):
    return {"type": "function", "function": {"name": name, "description": description,
                                             "parameters": {"type": "object", "properties": properties,
                                                            "required": required}}}


def spec_for(name, run=None):
    """The function spec of skill `name`: a built-in's, or one read from a skill file's `run` function."""
    if name in BUILTIN:
        description, params = BUILTIN[name]
        props = {k: {"type": t, "description": d} for k, (t, d) in params.items()}
        return _function(name, description, props, list(params))
    props, required = {}, []
    for pname, p in inspect.signature(run).parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        props[pname] = {"type": _JSON_TYPES.get(p.annotation, "string")}
        if p.default is p.empty:
            required.append(pname)
    doc = inspect.getdoc(run) or f"the {name} skill"
    return _function(name, doc.splitlines()[0], props, required)


def arguments_of(call):
    """(name, keyword arguments) of an OpenAI-shaped tool call; ValueError saying what is wrong with it."""
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise ValueError(f"not a tool call (want {{'id', 'function': {{'name', 'arguments'}}}}): {call!r:.200}")
    raw = fn.get("arguments") or "{}"
    try:
        args = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as e:
        raise ValueError(f"the arguments of {fn['name']} are not valid JSON ({e.msg} at {e.pos}): {raw!r:.200}") from None
    if not isinstance(args, dict):
        raise ValueError(f"the arguments of {fn['name']} must be a JSON object, got {raw!r:.200}")
    return fn["name"], args


def result_text(name, result):
    """A skill's result as the text of a tool message."""
    if name == "python" and isinstance(result, dict):
        text = result.get("stdout") or ""
        if result.get("returncode"):
            text += f"\n[stderr]\n{result.get('stderr') or ''}\n[exit code {result.get('returncode')}]"
            if result.get("error"):
                text += f" ({result['error']})"
        return text.strip() or "(no output)"
    if isinstance(result, str):
        return result
    try:
        return json.dumps(result)
    except (TypeError, ValueError):
        return repr(result)


def tool_message(call, content):
    return {"role": "tool", "tool_call_id": str(call.get("id", "")) if isinstance(call, dict) else "",
            "name": (call.get("function") or {}).get("name", "") if isinstance(call, dict) else "", "content": content}

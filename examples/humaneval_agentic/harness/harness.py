"""Agentic HumanEval: write the function, run the docstring's own examples on it in the sandbox (the python
skill), read what failed and revise, within the episode's step budget.

The examples come from task.input only - its `>>>` lines, or lines like `f(1, 2) == 3` (also ➞, =>, ->, =)
when it has none; the suite's hidden tests never reach the harness. A task without examples still gets its
code run once, so a syntax error or a missing function comes back to the model.

Knobs (params.toml) are what evolve tunes: `run_examples` (false: one model call, the plain harness),
`attempts`, `samples` per attempt (the first solution passing every example wins, else the one passing most is
revised), `revise_prompt` (how the failure report goes back: prompts/revise_*.md), and sampling.
"""

import ast
import builtins
import doctest
import re
import textwrap

# the suite's own reading of a completion (suites/humaneval.py): the first fenced block, else the reply
FENCE = re.compile(r"```[ \t]*[\w+-]*[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
ARROWS = r"(?:==>|==|➞|=>|->|=|#\s*=>|#\s*returns?|should return|returns?)"

# Runs in the python skill's sandbox: the data (CANDIDATE, EXAMPLES, ENTRY) is prepended as literals.
CHECK = r'''
import contextlib, io, signal, sys, traceback

def _timeout(signum, frame):
    raise TimeoutError("took more than 2 s (an infinite loop?)")

signal.signal(signal.SIGALRM, _timeout)
ns = {"__name__": "solution"}
try:
    signal.alarm(2)
    exec(compile(CANDIDATE, "solution.py", "exec"), ns)
    problem = None if callable(ns.get(ENTRY)) else f"the code defines no function {ENTRY}()"
except BaseException as e:
    problem = "the code does not run:\n" + "".join(traceback.format_exception_only(type(e), e)).strip()[-600:]
finally:
    signal.alarm(0)
if problem:
    print(problem)
    print("RESULT -1", len(EXAMPLES))
    sys.exit(0)  # a failed check is the candidate's failure, not the tool's

def same(got, printed, want):
    if got is None and printed.strip():  # `>>> print(...)`: doctest compares the printed text
        return printed.strip() == want
    try:
        expected = eval(want, {**ns, "true": True, "false": False})
    except Exception:  # not a literal: compare the text, as doctest does
        return want == repr(got)
    if isinstance(got, float) or isinstance(expected, float):
        try:
            return abs(got - expected) <= 1e-6 * max(1.0, abs(expected))
        except TypeError:
            return False
    return got == expected

failures = []
for source, want in EXAMPLES:
    out = io.StringIO()
    try:
        signal.alarm(2)
        with contextlib.redirect_stdout(out):
            if want is None:
                exec(source, ns)
            else:
                got = eval(source, ns)
    except BaseException as e:
        if want is not None and want.startswith("Traceback"):
            continue  # the docstring expects an exception
        expected = "" if want is None else f"\n  expected: {want}"
        failures.append(f"{source}{expected}\n  raised {type(e).__name__}: {str(e)[:200]}")
        continue
    finally:
        signal.alarm(0)
    if want is not None and not same(got, out.getvalue(), want):
        failures.append(f"{source}\n  expected: {want}\n  got: {repr(got)[:200]}")
print(f"{len(EXAMPLES) - len(failures)} of {len(EXAMPLES)} examples passed")
for failure in failures[:3]:
    print(failure)
print("RESULT", len(EXAMPLES) - len(failures), len(EXAMPLES))
'''


def entry_point(task):
    """The function to write: the suite's public metadata, else the prompt's last definition."""
    name = (getattr(task, "metadata", None) or {}).get("entry_point")
    return name or (re.findall(r"^def\s+(\w+)", task.input, re.MULTILINE) or ["solution"])[-1]


def _expression(source):
    """The parsed expression, or None when the text is not one."""
    try:
        return ast.parse(source, mode="eval").body
    except SyntaxError:
        return None


def _closed(expr, entry):
    """Whether an example's call names nothing but the function and builtins (`f(a) => 1` uses a free `a`)."""
    names = {n.id for n in ast.walk(expr) if isinstance(n, ast.Name)}
    return names <= {entry, "true", "false"} | set(dir(builtins))


def _doctest_examples(doc, entry):
    """The `>>>` examples; `>>> f(x) == y` with no output line is read as the check it stands for."""
    try:
        parsed = doctest.DocTestParser().get_examples(doc)
    except ValueError:  # inconsistent indentation: the caller reads the call lines instead
        return []
    found = []
    for e in parsed:
        source, want = e.source.strip(), e.want.strip() or None
        expr = _expression(source)
        if want is None and isinstance(expr, ast.Compare) and [type(o) for o in expr.ops] == [ast.Eq]:
            found.append((ast.unparse(expr.left), ast.unparse(expr.comparators[0])))
        elif want is not None or expr is None:  # a checked call, or a statement (an assignment) to run
            found.append((source, want))
        # else a bare expression with no output: a sloppy example no function could pass as doctest reads it
    return found


def _call_lines(text, entry):
    line_re = re.compile(rf"^\s*(?:[*-]\s*|for\s+|assert\s+)?(?P<call>{re.escape(entry)}\(.*?\))\s*{ARROWS}\s*(?P<want>.+?)\s*$")
    found = []
    for line in text.splitlines():
        m = line_re.match(line)
        if not m:
            continue
        want = m["want"] if _expression(m["want"]) is not None else m["want"].rstrip(".")
        call, value = _expression(m["call"]), _expression(want)
        if call is not None and value is not None and _closed(call, entry) and _closed(value, entry):
            found.append((m["call"], want))
    return found


def examples_of(prompt, entry):
    """(source, expected) pairs from the docstring of `entry` in the prompt; expected is None for a statement.
    Without `>>>` lines, lines like `f(1) == 2` count, those after an "Examples:" heading first (the lines
    before it may be the definition: `tri(n) = ...`)."""
    try:
        tree = ast.parse(prompt)
    except SyntaxError:
        return []
    fn = next((n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == entry),
              None)
    doc = (ast.get_docstring(fn) if fn else None) or ""
    if found := _doctest_examples(doc, entry):
        return found
    headings = [m.end() for m in re.finditer(r"^\s*(?:for )?examples?\s*:?\s*$", doc, re.IGNORECASE | re.MULTILINE)]
    return (headings and _call_lines(doc[headings[-1]:], entry)) or _call_lines(doc, entry)


def _indent_of(line):
    return len(line) - len(line.lstrip(" \t"))


def as_body(code):
    """A function body whose indentation was lost (wholly, or on its first line), indented again. The suite
    (suites/humaneval.py) reads a body the same way, so the code checked here is the code it scores."""
    lines = code.splitlines()
    nonblank = [i for i, line in enumerate(lines) if line.strip()]
    if not nonblank or _indent_of(lines[nonblank[0]]) > 0:
        return code
    first, rest = nonblank[0], nonblank[1:]
    if not rest:
        level = 0
    elif lines[first].rstrip().endswith(":"):
        level = _indent_of(lines[rest[0]]) - 4  # the block it opens sits one level deeper than it
    else:
        level = min(_indent_of(lines[i]) for i in rest)
    if level <= 0:  # the whole body was dedented
        return "\n".join(("    " + line) if line.strip() else line for line in lines) + "\n"
    lines[first] = " " * level + lines[first]
    return "\n".join(lines) + "\n"


def program_of(reply, prompt, entry):
    """The whole program a reply stands for: the prompt (its imports and helpers) with the reply's function."""
    m = FENCE.search(reply)
    code = m.group(1) if m else reply
    dedented = textwrap.dedent(code)
    if re.search(rf"^(?:async\s+)?def\s+{re.escape(entry)}\s*\(", dedented, re.MULTILINE):
        return prompt.rstrip() + "\n    pass\n\n\n" + dedented
    return prompt + as_body(code)


def check(ctx, program, examples, entry):
    """(examples passed, or -1 when the code does not run; the report the model reads)."""
    script = f"CANDIDATE = {program!r}\nEXAMPLES = {examples!r}\nENTRY = {entry!r}\n" + CHECK
    result = ctx.skill("python", script)
    lines = (result.get("stdout") or "").strip().splitlines()
    if result.get("returncode") == 0 and lines and lines[-1].startswith("RESULT "):
        return int(lines[-1].split()[1]), "\n".join(lines[:-1])
    err = (result.get("stderr") or result.get("error") or "").strip().splitlines()
    return -1, "running it failed: " + (err[-1] if err else f"exit code {result.get('returncode')}")


def solve(task, ctx):
    p = ctx.params
    entry = entry_point(task)
    system = ctx.prompt("system")
    messages = [{"role": "user", "content": ctx.prompt("complete", code=task.input)}]
    if not p["run_examples"]:
        return program_of(ctx.llm(messages, system=system), task.input, entry)
    examples = examples_of(task.input, entry)
    best, tried, reply = None, set(), ""  # best: (passed, program)
    for _ in range(p["attempts"]):
        if ctx.budget.steps_left < 1 + p["samples"]:  # one model call and a check per sample
            break
        replies = ctx.sample(messages, p["samples"], system=system)
        latest = None  # this attempt's best: (passed, reply, report), what the revision shows
        for reply in replies:
            program = program_of(reply, task.input, entry)
            if program in tried:  # the same code again: its report is known, a rerun would be a wasted step
                continue
            tried.add(program)
            passed, report = check(ctx, program, examples, entry)
            if passed >= len(examples):
                return program
            if best is None or passed > best[0]:
                best = (passed, program)
            if latest is None or passed > latest[0]:
                latest = (passed, reply, report)
        if latest is None:  # nothing new this attempt: asking again would repeat the conversation
            break
        messages += [{"role": "assistant", "content": latest[1]},
                     {"role": "user", "content": ctx.prompt(p["revise_prompt"], report=latest[2], code=task.input)}]
    return best[1] if best else program_of(reply, task.input, entry)

"""Program-aided reasoning: the model writes a short program, the python skill runs it in the sandbox, and
the harness reads what it printed; on an error or no output the model sees it and tries again.

Knobs (params.toml) are what evolve tunes: `mode` (direct: answer in words; program: the harness runs the
code block of each reply; tool: the model calls the python tool itself, through ctx.llm(tools=...)),
`attempts`, `samples` per attempt (majority vote over the programs' results), the prompts, and sampling.
"""

import re

FENCE = re.compile(r"```(?:python|py)?\s*\n(.*?)(?:```|$)", re.DOTALL)


def program_of(reply):
    """The code block of a reply, or the reply itself when it looks like bare code."""
    m = FENCE.search(reply)
    return (m.group(1) if m else reply).strip()


def printed(result):
    """(the last line the program printed, or None; what went wrong, for the revision prompt)."""
    lines = [line for line in (result.get("stdout") or "").splitlines() if line.strip()]
    if result.get("returncode") == 0 and lines:
        return lines[-1].strip(), ""
    err = (result.get("stderr") or "").strip().splitlines()
    return None, (err[-1] if err else "the program printed nothing; end it with print(answer)")


def direct(task, ctx):
    return ctx.llm(ctx.prompt("question", question=task.input), system=ctx.prompt("direct"))


def with_programs(task, ctx):
    p = ctx.params
    messages = [{"role": "user", "content": ctx.prompt(p["program_prompt"], question=task.input)}]
    last = ""
    for _ in range(p["attempts"]):
        replies = ctx.sample(messages, p["samples"], system=ctx.prompt("system"))
        answers, error, results = [], "", {}
        for reply in replies:
            program = program_of(reply)
            if program not in results:  # identical programs (greedy samples) run once: a rerun says nothing new
                results[program] = printed(ctx.skill("python", program))
            answer, error = results[program]
            if answer is not None:
                answers.append(answer)
        if answers:
            return ctx.vote(answers) or answers[0]
        last = replies[0]
        messages += [{"role": "assistant", "content": last},
                     {"role": "user", "content": ctx.prompt("revise", error=error)}]
    return ctx.extract(last, "last_number") or last


def with_tool(task, ctx):
    p = ctx.params
    messages = [{"role": "system", "content": ctx.prompt("system")},
                {"role": "user", "content": ctx.prompt(p["program_prompt"], question=task.input)}]
    reply = {"content": ""}
    for _ in range(p["attempts"]):
        reply = ctx.llm(messages, tools=["python"], tool_choice="required" if len(messages) == 2 else "auto")
        messages.append(reply)
        if not reply["tool_calls"]:
            break
        for call in reply["tool_calls"]:
            result = ctx.call(call)
            messages.append(result)
            if not result["content"].startswith("ERROR") and "[exit code" not in result["content"]:
                return result["content"].strip().splitlines()[-1]
    return ctx.extract(reply["content"] or "", "last_number") or reply["content"]


def solve(task, ctx):
    return {"direct": direct, "program": with_programs, "tool": with_tool}[ctx.params["mode"]](task, ctx)

"""The agent program. ratchet may rewrite this directory; keep scorers and data outside it."""


def solve(task, ctx):
    prompt = ctx.prompt("question", question=task.input, rules=ctx.rules)
    reply = ctx.llm(prompt, system=ctx.prompt("system"))
    if "calculator" in ctx.skills_enabled and ctx.params.get("check_with_calculator"):
        expression = task.input.removeprefix("Calculate").strip().rstrip(".")
        try:
            return str(ctx.skill("calculator", expression))
        except Exception:
            pass
    return reply

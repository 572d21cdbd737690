"""Complete a Python function from its signature and docstring."""


def solve(task, ctx):
    prompt = ctx.prompt("complete", code=task.input)
    reply = ctx.llm(prompt, system=ctx.prompt("system"))
    return reply

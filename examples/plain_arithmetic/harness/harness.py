"""The plain seed harness: one prompt, one model call, a generic answer step. ratchet may rewrite this directory.

At the seed values of params.toml every technique below is off; the search proposer may turn them on:
an instruction variant (prompts/instruction_*.md), few-shot demos bootstrapped from verified train
successes, several samples with a majority vote, where to read the answer in a reply, and a retry when
a reply fails that format check. Nothing here looks at what a task is about.
"""


def solve(task, ctx):
    p = ctx.params
    system = ctx.prompt(f"instruction_{p['instruction']}")
    messages = ctx.demo_messages(p["demos"])  # [] at demos = 0
    messages.append({"role": "user", "content": ctx.prompt("question", question=task.input)})
    replies = ctx.sample(messages, p["samples"], system=system)  # one model call, `samples` completions
    answers = [ctx.answer(messages, reply, system=system) for reply in replies]
    return ctx.vote(answers) or replies[0]

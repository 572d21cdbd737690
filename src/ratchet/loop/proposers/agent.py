"""A tool-using meta-agent over any chat model: it reads the round's workspace (the parent's harness, full
dev trajectories, the history, lessons, a brief), edits a working copy of the harness, runs it on single
dev or train tasks (`run_episode`), and finishes with a rationale and a hypothesis.

One action per reply. Each request offers the tools as functions with a required call (`tools=`, choice
"required"): an OpenAI-compatible server calls them natively (vLLM guides the call by the tools' JSON
schemas, so even a small model's call parses), the local backend through models/tool_prompt.py's
convention; a reply that holds no tool call is read as a JSON action (agent_tools.ACTION_SCHEMA), for models
that write one. A reply that is not a valid action, or a tool that fails, costs a step and comes back to the
model as an error it can correct; it never ends the proposal. A request the
model refuses (e.g. longer than a small model's context) is retried with the conversation and the reply
cut by half, down to MIN_WINDOW_CHARS; an endpoint that is down stops the run, as it does for the
harness's model. The proposal
ends at `finish` with a valid change, or fails (a recorded failed proposal) when the step or token limit
(`[loop] agent_max_steps`, `agent_max_tokens`) is reached first.

Every step - tool, arguments, a summary of the result, the error - goes into the proposal's meta
(`steps`), which the engine stores in the ledger (`proposal/<round>` state; the failed proposal's
decision), and `ratchet show` prints; it is also appended to `r<NNN>.steps.jsonl` beside the workspace as
it happens, so a long session can be followed and a killed one read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ratchet.loop.proposers.agent_tools import AgentTools, ToolError, action_of_call, function_specs, parse_action, tools_help
from ratchet.loop.proposers.base import ModelProposerState, Proposal, ProposalContext, ProposalError
from ratchet.loop.proposers.search import derive_seed
from ratchet.loop.workspace import harness_copy
from ratchet.models.base import ChatModel, ModelError, ModelUnavailable
from ratchet.types import Message, SamplingParams, Tools

SYSTEM_PROMPT = f"""\
You are a meta-agent. You improve an AI agent's harness: the code and text around a fixed language model.
Your working directory is a workspace: BRIEF.md (your task, what may be edited, the budget), harness/ (the
harness: harness.py with solve(task, ctx), params.toml with knobs, prompts/, skills/, rules.md),
trajectories/ (full records of the harness on dev tasks: model calls, tool calls, outputs, scorer feedback),
history.md (earlier attempts and what became of them) and lessons.md.

What you may change, under harness/ only: harness.py; prompts/*; rules.md; params.toml `value =` lines
(inside their ranges or choices) and the [skills] `library` and `enabled` lists; a new skill skills/NAME.py
defining `def run(...)`, used as ctx.skill("NAME", ...) once NAME is in both [skills] lists. Scorers, suite
data and ratchet.toml are off limits. Make ONE focused change that should fix the most common failure.

Act with exactly ONE tool call per reply. If you cannot call tools, reply with exactly ONE JSON object and
nothing else: {{"tool": "<name>", "args": {{...}}}}
Tools:
{tools_help()}

Start by reading BRIEF.md and a failing trajectory. Check your change with run_episode on a failing dev task
before you finish."""

REPLY_TOKENS = 2048
WINDOW_CHARS = 60_000  # of the conversation re-sent each step; older steps are dropped (the system prompt stays)
MIN_WINDOW_CHARS = 4_000  # a refused request is retried with half the window (and reply) down to this
_REMINDER = 'Call one tool, or reply with exactly one JSON object, e.g. {"tool": "read", "args": {"path": "BRIEF.md"}}.'
AGENT_TOOLS = Tools(function_specs(), "required")


def _args_summary(args: dict[str, Any]) -> dict[str, Any]:
    """Arguments as stored in the ledger: long texts (a whole file) shortened."""
    out = {}
    for k, v in args.items():
        text = v if isinstance(v, str) else json.dumps(v)
        out[k] = text if len(text) <= 120 else f"{text[:100]}... ({len(text)} chars)"
    return out


def _chars(m: Message) -> int:
    return len(m.get("content") or "") + (len(json.dumps(m["tool_calls"])) if m.get("tool_calls") else 0)


def _window(messages: list[Message], limit: int = WINDOW_CHARS) -> list[Message]:
    """The system prompt and the opening message, plus the newest steps that fit in `limit` characters."""
    head, rest = messages[:2], messages[2:]
    size = sum(_chars(m) for m in head)
    kept: list[Message] = []
    for i in range(len(rest) - 2, -1, -2):  # (assistant, user) pairs, newest first
        pair = rest[i:i + 2]
        size += sum(_chars(m) for m in pair)
        if size > limit and kept:
            note = f"{head[1]['content']}\n[{i // 2 + 1} earlier steps are not shown again]"
            return [head[0], {"role": "user", "content": note}] + kept  # roles still alternate
        kept = pair + kept
    return head + kept


class AgentProposer(ModelProposerState):
    name = "agent"
    uses_workspace = True  # the engine writes the round's workspace for it

    def __init__(self, model: ChatModel, max_steps: int = 24, max_tokens: int = 200_000, temperature: float = 0.3,
                 system_prompt: str = SYSTEM_PROMPT):
        self.model, self.max_steps, self.max_tokens = model, max_steps, max_tokens
        self.temperature, self.system_prompt = temperature, system_prompt
        self.proposed = self.accepted = 0
        self.bold_left = 0  # proposals still to push for a different kind of change (after many rejections)

    async def propose(self, ctx: ProposalContext) -> Proposal:
        if ctx.workspace is None:
            raise ProposalError("agent: the loop wrote no workspace for this round (the arena or engine is too old)")
        tools = AgentTools(ctx.workspace, harness_copy(ctx.workspace), ctx.probe)
        opening = f"Round {ctx.round}. Your workspace is ready; start with BRIEF.md."
        if self.bold_left > 0:
            opening += " The recent attempts were all rejected: try a substantially different kind of change."
        messages: list[Message] = [{"role": "system", "content": self.system_prompt},
                                   {"role": "user", "content": opening}]
        steps: list[dict[str, Any]] = []
        log = ctx.workspace.with_name(ctx.workspace.name + ".steps.jsonl")
        log.unlink(missing_ok=True)
        tokens, window, reply_tokens = 0, WINDOW_CHARS, REPLY_TOKENS
        for step in range(1, self.max_steps + 1):
            if tokens >= self.max_tokens:
                break
            params = SamplingParams(temperature=self.temperature, max_tokens=reply_tokens,
                                    seed=derive_seed(ctx.seed, ctx.round, "agent", step))
            try:
                completion = await self.model.chat(_window(messages, window), params, AGENT_TOOLS)
            except ModelUnavailable:
                raise  # the endpoint is down: the run stops and resumes, as for the harness's model
            except ModelError as e:  # refused, e.g. over a small model's context: retry shorter, then give up
                steps.append({"step": step, "tokens": 0, "error": f"the model refused the request: {e}"[:500]})
                _append(log, steps[-1])
                if window <= MIN_WINDOW_CHARS:
                    raise ProposalError(f"agent: the proposer model refused the request even with the conversation "
                                        f"cut to {window} characters: {e}", steps) from None
                window, reply_tokens = window // 2, max(256, reply_tokens // 2)
                continue
            used = completion.prompt_tokens + completion.completion_tokens
            tokens += used
            reply = completion.text
            call = completion.tool_calls[0] if completion.tool_calls else None
            record: dict[str, Any] = {"step": step, "tokens": used}
            try:
                tool, args = action_of_call(call) if call else parse_action(reply)
                record.update(tool=tool, args=_args_summary(args))
                if tool == "finish":
                    if not args["rationale"].strip() or not args["hypothesis"].strip():
                        raise ToolError("finish needs a rationale and a hypothesis, both non-empty")
                    if problems := await tools.finish_problems():
                        raise ToolError("cannot finish yet: " + "; ".join(problems))
                    record["result"] = "finished: " + ", ".join(sorted(tools.changes()))
                    steps.append(record)
                    _append(log, record)
                    return self._proposal(ctx, tools, args, steps, tokens)
                result = await tools.call(tool, args)
                record["result"] = result.splitlines()[0][:300] if result else ""
                feedback = result
            except ToolError as e:
                record["error"] = str(e)[:500]
                feedback = f"ERROR: {e}\n{_REMINDER}"
            steps.append(record)
            _append(log, record)
            left = f"[step {step}/{self.max_steps}, tokens {tokens}/{self.max_tokens}]"
            if call:  # the call and its result as tool turns (one call answered: the others are dropped)
                messages += [{"role": "assistant", "content": reply[:8000], "tool_calls": [call]},
                             {"role": "tool", "tool_call_id": call.get("id", ""), "name": record.get("tool", "?"),
                              "content": f"{feedback}\n{left}"}]
            else:
                messages += [{"role": "assistant", "content": reply[:8000]}, {"role": "user", "content": f"{feedback}\n{left}"}]
        why = f"used {tokens} of {self.max_tokens} tokens" if tokens >= self.max_tokens else f"used all {self.max_steps} steps"
        raise ProposalError(f"agent: {why} without a valid finish ({sum('error' in s for s in steps)} steps were errors)",
                            steps)

    def _proposal(self, ctx: ProposalContext, tools: AgentTools, args: dict[str, Any], steps: list[dict[str, Any]],
                  tokens: int) -> Proposal:
        rationale, hypothesis = args["rationale"].strip(), args["hypothesis"].strip()
        meta = {"steps": steps, "tokens": tokens, "episodes": tools.episodes, "model": getattr(self.model, "name", "?"),
                "workspace": str(ctx.workspace), "bold": self.bold_left > 0}
        if (summary := str(args.get("summary") or "").strip()):
            meta["summary"] = summary.splitlines()[0][:160]
        return Proposal(edits=tools.changes(), rationale=rationale[:4000], hypothesis=hypothesis[:2000],
                        proposer=self.name, meta=meta)



def _append(log: Path, record: dict[str, Any]) -> None:
    with log.open("a") as f:
        f.write(json.dumps(record) + "\n")

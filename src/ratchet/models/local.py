"""The local backend: a transformers causal LM behind the ChatModel protocol, with dynamic batching.

The model-specific part is small: apply the chat template, run a forward pass over a KV cache, pick rows
of the cache, decode tokens. Queueing, padding and stopping live in batching.py, sampling (top-k, top-p, the
penalties) in sampling.py.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Sequence
from typing import Any

import torch
from transformers.cache_utils import DynamicLayer

from ratchet.models import tool_prompt
from ratchet.models.base import ModelError
from ratchet.models.batching import Admit, DynamicBatcher, Finished, RowRequest, RowResult, decode_batch, left_pad
from ratchet.models.gguf import EMBEDDED_NAME, load_causal_lm, resolve_local_model
from ratchet.types import Completion, Message, SamplingParams, Tools

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} requested but CUDA is not available; use device = \"cpu\" or \"auto\"")
    return torch.device(device)


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        # bf16 halves memory traffic on GPUs; most CPUs have no fast bf16 matmul, so stay in fp32 there
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise ModelError(f"unknown dtype {dtype!r}; use one of auto, {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


def torch_threads() -> int:
    """The cores this process may use, or `$RATCHET_TORCH_THREADS` when set.

    The override is for shared machines: with more busy processes than cores, OpenMP threads that wait on
    each other spin, and one thread per process wastes far less than one per core.
    """
    override = os.environ.get("RATCHET_TORCH_THREADS")
    if override:
        if not override.isdigit() or int(override) < 1:
            raise ModelError(f"RATCHET_TORCH_THREADS must be a positive integer, got {override!r}")
        return int(override)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class HFStepModel:
    """The `StepModel` side of a transformers causal LM (see batching.StepModel)."""

    def __init__(self, model: Any, tokenizer: Any, device: torch.device):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        eos = model.generation_config.eos_token_id if model.generation_config is not None else None
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        if not eos_ids:
            raise ModelError("the model names no end-of-sequence token (generation_config.eos_token_id)")
        self.eos_ids = frozenset(eos_ids)
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.eos_ids)  # masked out, so any valid id works
        self.context_len = int(getattr(model.config, "max_position_embeddings", 0) or 1 << 30)

    def prefill(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, state: Any
    ) -> tuple[torch.Tensor, Any]:
        # logits_to_keep=1: the vocab projection of every prompt position would cost more than the prompt itself
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=state,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1, :].float(), out.past_key_values

    def step(
        self, tokens: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, state: Any
    ) -> tuple[torch.Tensor, Any]:
        out = self.model(
            input_ids=tokens, attention_mask=attention_mask, position_ids=position_ids, past_key_values=state, use_cache=True
        )
        return out.logits[:, -1, :].float(), out.past_key_values

    def repeat_rows(self, state: Any, times: int) -> Any:
        state.batch_repeat_interleave(times)
        return state

    def select_rows(self, state: Any, rows: torch.Tensor) -> Any:
        state.batch_select_indices(rows)
        return state

    def can_join(self, state: Any) -> bool:
        return all(type(layer) is DynamicLayer for layer in getattr(state, "layers", [None]))

    def join_rows(self, state: Any, other: Any) -> Any:
        for mine, theirs in zip(state.layers, other.layers, strict=True):
            width = max(mine.keys.shape[-2], theirs.keys.shape[-2])  # [batch, heads, positions, head dim]
            mine.keys = torch.cat([left_pad(mine.keys, width, -2), left_pad(theirs.keys, width, -2)])
            mine.values = torch.cat([left_pad(mine.values, width, -2), left_pad(theirs.values, width, -2)])
        return state

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def encode_chat(self, messages: list[Message]) -> list[int]:
        if getattr(self.tokenizer, "chat_template", None):
            ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
            return list(ids)
        # a base model without a template: a plain transcript that ends where the assistant speaks
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
        return list(self.tokenizer(text)["input_ids"])


def check_messages(messages: list[Message]) -> None:
    if not messages:
        raise ModelError("chat() needs at least one message")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ModelError(f"message {i} must be a dict with string 'role' and 'content', got {m!r:.200}")


class LocalModel:
    """A ChatModel running a local transformers model; concurrent calls share forward passes."""

    def __init__(self, name: str = EMBEDDED_NAME, device: str = "auto", dtype: str = "auto", max_batch: int = 32):
        self.name = name
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        if self.device.type == "cpu":
            torch.set_num_threads(torch_threads())
        self.threads = torch.get_num_threads()
        self.path = resolve_local_model(name)
        model, tokenizer = load_causal_lm(self.path, self.dtype, str(self.device))
        self.step_model = HFStepModel(model, tokenizer, self.device)
        self.batcher = DynamicBatcher(self._run_batch, max_batch=max_batch, name=f"ratchet-local-{name}")

    def __repr__(self) -> str:
        return (
            f"LocalModel(name={self.name!r}, path='{self.path}', device='{self.device}', dtype={self.dtype}, "
            f"threads={self.threads})"
        )

    def _run_batch(self, rows: list[RowRequest], admit: Admit, finished: Finished) -> list[RowResult]:
        return decode_batch(self.step_model, rows, admit, finished)

    def rows_for(self, prompt_ids: list[int], params: SamplingParams) -> list[RowRequest]:
        room = self.step_model.context_len - len(prompt_ids)
        if room < 1:
            raise ModelError(
                f"the prompt has {len(prompt_ids)} tokens; {self.name} reads at most {self.step_model.context_len}. "
                "Shorten the messages."
            )
        seed = params.seed if params.seed is not None else random.randrange(1 << 62)
        return [
            RowRequest(
                prompt_ids=tuple(prompt_ids),
                max_tokens=min(params.max_tokens, room),
                temperature=params.temperature,
                top_p=params.top_p,
                stop=params.stop,
                seed=seed + k,  # sample k of a seeded call is reproducible on its own
                top_k=params.top_k,
                frequency_penalty=params.frequency_penalty,
                presence_penalty=params.presence_penalty,
                repetition_penalty=params.repetition_penalty,
            )
            for k in range(params.distinct_samples)  # greedy rows would all be the same: decode one
        ]

    async def chat(self, messages: list[Message], params: SamplingParams, tools: Tools | None = None) -> Completion:
        # no native tool calling here: the prompt convention (models/tool_prompt.py)
        messages = tool_prompt.plain_messages(messages, tools)
        check_messages(messages)
        prompt_ids = self.step_model.encode_chat(messages)
        results = await self.batcher.submit(self.rows_for(prompt_ids, params))
        completion = Completion(
            texts=[r.text for r in results] * (params.n // len(results)),
            prompt_tokens=len(prompt_ids),
            completion_tokens=sum(r.completion_tokens for r in results),
        )
        return tool_prompt.read_reply(completion, tools) if tools is not None else completion

    async def aclose(self) -> None:
        await asyncio.to_thread(self.batcher.close)

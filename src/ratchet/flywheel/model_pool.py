"""The models a flywheel run holds open: the base model, each trained checkpoint (on the vLLM backend, a server
ratchet starts for it), and a judge given as its own [model]-style table. A checkpoint that lost its generation
is released at once, so a run holds at most the current model, one candidate and the judge."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ratchet.config import ModelSection, ProjectConfig
from ratchet.flywheel import registry
from ratchet.models import build_model
from ratchet.models.base import ChatModel

_JUDGE = "judge"  # the key of a judge with its own [model]-style table


class ModelPool:
    def __init__(self, cfg: ProjectConfig, base: ChatModel, factory: Callable[[str], ChatModel] | None = None):
        """`factory` replaces model loading (tests of the loop mechanics)."""
        self.cfg, self.factory = cfg, factory
        self._open: dict[str, ChatModel] = {cfg.model.name: base}

    def get(self, name: str) -> ChatModel:
        """The model called `name` (the base, or a checkpoint in the registry), opened on first use."""
        if name not in self._open:
            if self.factory is not None:
                self._open[name] = self.factory(name)
            else:
                update: dict[str, Any] = {"name": name}
                if self.cfg.model.backend == "vllm":  # a checkpoint trained here: a server ratchet starts for it
                    update["base_url"] = None
                self._open[name] = self._build(self.cfg.model.model_copy(update=update))
        return self._open[name]

    def judge(self, table: dict[str, Any]) -> ChatModel:
        """A judge given as a [model]-style table: any backend, e.g. a stronger model behind an API."""
        if _JUDGE not in self._open:
            self._open[_JUDGE] = self._build(ModelSection.model_validate(table))
        return self._open[_JUDGE]

    def weights_dir(self, name: str) -> Path:
        from ratchet.models.gguf import resolve_local_model

        return registry.registry_model_dir(self.cfg.root, name) or resolve_local_model(name)

    async def release(self, name: str) -> None:
        """Close `name` (and stop its server); the base model stays open, the project owns it."""
        if name != self.cfg.model.name and name in self._open:
            await self._open.pop(name).aclose()

    async def aclose(self) -> None:
        for name in list(self._open):
            await self.release(name)

    def _build(self, section: ModelSection) -> ChatModel:
        return build_model(section, self.cfg.root, self.cfg.state_dir / "cache.sqlite")

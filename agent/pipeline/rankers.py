"""The one owner of the served ranker adapters (as vLLM's ``OpenAIServingModels`` owns a server's
LoRA adapters): which adapters are registered, which one serves (or which A/B arms), each one's
fusion weight and prompt settings, and the engine that scores it. The registry's rules
(``agent.llm.registry``) are read here once at start and again only when ``serve`` changes what
is served, under one lock; a request reads what is held.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from agent.catalog import Item
from agent.config import Settings
from agent.llm import registry
from agent.llm.engine import Engine, EngineError
from agent.llm.hardware import resolve_dtype
from agent.llm.model_files import model_path
from agent.pipeline.ab import arm_of
from agent.pipeline.llm_gate import LLMGate, LLMUnavailable
from agent.pipeline.ranker import PromptConfig, Ranker, RankRequest, fuse, prompt_config_of


class ServedRankers:
    """The ranker adapters this service serves. ``adapters``: name -> folder (the registry as of
    the last read); ``default``: the serving adapter (None: the base model, retrieval order);
    ``ab_arms``: the adapters users are split between by hash ([] without a split). Raises
    ``UnknownAdapterError`` at construction when the settings name an adapter the registry
    lacks."""

    def __init__(self, settings: Settings, gate: LLMGate):
        self.settings, self.gate = settings, gate
        self._lock = threading.Lock()
        self._engines: dict[str, Engine] = {}  # adapter -> its merged checkpoint, in-process
        self.adapters: dict[str, Path] = registry.adapters(settings)
        self.default = registry.ranker_adapter(settings)
        self.ab_arms = registry.ab_arms(settings)
        self._weights = {name: registry.fusion_weight(settings, name) for name in self.adapters}
        self._prompts = {name: prompt_config_of(path) for name, path in self.adapters.items()}

    def choose(self, user_id: str, adapter: str | None) -> str | None:
        """The adapter that ranks for ``user_id``: the one asked for, else the user's A/B arm,
        else the serving one. Raises ``UnknownAdapterError`` for a name not registered."""
        if adapter is None:
            adapter = arm_of(user_id, self.ab_arms, self.settings.ab_salt) if self.ab_arms else self.default
        registry.check_adapter(adapter, self.adapters)
        return adapter

    def weight(self, adapter: str | None) -> float:
        """The fusion weight served for ``adapter`` (0: retrieval order, no ranking call)."""
        return self._weights.get(adapter, 0.0) if adapter is not None else 0.0

    def prompt(self, adapter: str | None) -> PromptConfig:
        """The prompt settings ``adapter`` was trained with (the defaults for the base model)."""
        return self._prompts.get(adapter) or PromptConfig()

    def in_use(self) -> list[str]:
        """The adapters whose ranking call runs on some request (a positive weight)."""
        arms = self.ab_arms or ([self.default] if self.default else [])
        return [a for a in arms if self.weight(a) > 0]

    def engine(self, adapter: str) -> tuple[Engine, str | None]:
        """The engine that scores ``adapter``, and the adapter name to pass it: the vLLM server's
        LoRA adapter (``MUSE_RANK_ENGINE=lora``), or the adapter's merged checkpoint in-process
        (loaded on first use)."""
        if self.settings.rank_engine == "lora" and self.gate.engine is not None:
            return self.gate.engine, adapter
        with self._lock:
            if adapter not in self._engines:
                from agent.llm.merged import merged_checkpoint
                from agent.llm.transformers_engine import TransformersEngine

                folder = merged_checkpoint(model_path(self.settings), self.adapters[adapter], self.settings.data_dir)
                self._engines[adapter] = TransformersEngine(folder, dtype=resolve_dtype(self.settings.llm_dtype))
            return self._engines[adapter], None

    def scores(
        self,
        adapter: str,
        history: list[str],
        ids: list[str],
        retrieval: list[float],
        items: dict[str, Item],
        deadline: float,
    ) -> np.ndarray:
        """The candidates' scores, shape ``(len(ids),)``: the LLM's label scores for ``adapter``
        fused with the ``retrieval`` scores by its weight. ``history``: the user's item ids,
        oldest first (those missing from ``items`` are left out). Raises ``EngineError`` when
        ``deadline`` (monotonic seconds) has passed or the engine fails."""
        prompt, weight = self.prompt(adapter), self.weight(adapter)
        request = RankRequest.of([h for h in history if h in items], ids, retrieval, items, prompt)
        engine, name = self.engine(adapter)
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            raise EngineError("the deadline passed before ranking")
        llm = Ranker(engine, name, weight, prompt).llm_scores([request], timeout=timeout)[0]
        return fuse(retrieval, llm, weight)

    def warm_up(self, items: list[Item]) -> None:
        """One ranking call per adapter in use, on three ``items`` (a history of one, two
        candidates): the engines load and compile before the first request needs them."""
        for adapter in self.in_use():
            engine, name = self.engine(adapter)
            prompt = self.prompt(adapter)
            request = RankRequest.of(
                [i.id for i in items[:1]], [i.id for i in items[1:3]], [1.0, 0.5], {i.id: i for i in items}, prompt
            )
            Ranker(engine, name, 1.0, prompt).llm_scores([request])

    def serve(self, name: str, split: bool = False) -> dict:
        """Send traffic to a (newly promoted) ranker adapter, or split users between it and the
        current one by the A/B hash. With ``MUSE_RANK_ENGINE=lora`` an adapter the engine does
        not have yet is loaded into it while serving (runtime LoRA loading); otherwise its merged
        checkpoint is loaded in-process. No restart either way. Raises ``UnknownAdapterError``
        and ``LLMUnavailable`` (no engine is served)."""
        registered = registry.adapters(self.settings)  # the registry as it is now, not as at start-up
        registry.check_adapter(name, registered)
        engine = self.gate.engine
        if engine is None:
            raise LLMUnavailable("this service runs without an LLM engine")
        with self._lock:
            self.adapters[name] = registered[name]
            self._weights[name] = registry.fusion_weight(self.settings, name)
            self._prompts[name] = prompt_config_of(registered[name])
        if self.settings.rank_engine == "lora":
            loaded = name not in engine.adapters
            if loaded:
                engine.load_adapter(name, registered[name])
        else:
            loaded = name not in self._engines
            self.engine(name)
        previous = self.default
        if split and previous and previous != name:
            self.ab_arms = [previous, name]
        else:
            self.default, self.ab_arms = name, []
        return {"serving": name, "previous": previous, "loaded_at_runtime": loaded, "ab_arms": list(self.ab_arms)}

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()

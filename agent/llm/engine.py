"""The engine interface: what the rest of Muse may ask of a language model.

Only one question is needed for ranking: "given this conversation, how likely is each of these
label tokens as the first token of the answer?" Both engines answer it with full-vocabulary
log-probabilities of the label tokens, so a label never goes missing (design.md: vLLM's top-k
logprobs can miss labels) and the two engines can be compared number for number.

Adapters are chosen by *name* from an allow-list (the adapter registry folder), never by a
path that came with a request.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}


class EngineError(RuntimeError):
    """The engine could not answer (server down, bad response)."""


class UnknownAdapterError(ValueError):
    """An adapter name outside the allow-list."""

    def __init__(self, name: str, allowed: Sequence[str]):
        listed = ", ".join(sorted(allowed)) or "none registered"
        super().__init__(f"unknown adapter {name!r}; allowed: {listed}")
        self.name = name


class Engine(Protocol):
    adapters: dict[str, Path]  # name -> folder, the allow-list

    def label_logprobs(
        self, conversations: Sequence[list[Message]], labels: Sequence[str], adapter: str | None = None
    ) -> list[list[float]]:
        """For each conversation, the log-probability of each label as the answer's first token
        (one forward pass per conversation; ``adapter=None`` is the base model)."""
        ...

    def generate(
        self, conversations: Sequence[list[Message]], max_tokens: int = 64, adapter: str | None = None,
        temperature: float = 0.0, json_schema: dict | None = None,
    ) -> list[str]:
        """The assistant's reply to each conversation (greedy at temperature 0). ``json_schema``
        asks for output constrained to the schema where the engine can enforce it (vLLM); the
        caller validates the reply either way."""
        ...

    def load_adapter(self, name: str, path: Path) -> None:
        """Register and load an adapter while serving (runtime LoRA loading); it joins the
        allow-list once loaded."""
        ...

    def close(self) -> None: ...


def discover_adapters(folder: Path | None) -> dict[str, Path]:
    """Every sub-folder of ``folder`` holding a peft adapter is registered under its name."""
    if folder is None or not folder.is_dir():
        return {}
    return {p.name: p for p in sorted(folder.iterdir()) if (p / "adapter_config.json").exists()}


def read_manifest(path: Path) -> dict:
    file = path / "manifest.json"
    return json.loads(file.read_text()) if file.exists() else {}


PROMOTED_FILE = "promoted.json"  # in the registry: the serving ranker adapter and its promotions


def promoted_adapter(registry: Path) -> str | None:
    file = Path(registry) / PROMOTED_FILE
    return json.loads(file.read_text())["serving"] if file.exists() else None


def check_adapter(name: str | None, adapters: dict[str, Path]) -> None:
    if name is not None and name not in adapters:
        raise UnknownAdapterError(name, list(adapters))


def prompt_ids(tokenizer, conversation: list[Message]) -> list[int]:
    """Token ids of a chat prompt, ending where the assistant's answer begins. Training and the
    in-process engine both use this, so the tuned model sees exactly the prompts it is asked."""
    ids = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def lora_rank(path: Path) -> int:
    """The rank ``r`` of the peft adapter in ``path`` (from its adapter_config.json)."""
    return int(json.loads((path / "adapter_config.json").read_text())["r"])


def single_token_ids(tokenizer, labels: Sequence[str]) -> list[int]:
    """Token id of each label; a label the tokenizer splits cannot be scored in one pass."""
    ids = []
    for label in labels:
        tokens = tokenizer.encode(label, add_special_tokens=False)
        if len(tokens) != 1:
            raise ValueError(f"label {label!r} is {len(tokens)} tokens for this tokenizer; labels must be one token")
        ids.append(tokens[0])
    if len(set(ids)) != len(ids):
        raise ValueError(f"labels {list(labels)} do not map to distinct tokens")
    return ids

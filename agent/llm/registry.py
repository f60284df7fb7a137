"""The LoRA adapter registry: one folder (``MUSE_ADAPTERS_DIR``) whose sub-folders are the
adapters Muse may serve, by name (the allow-list: a request never names a path).

Each adapter folder holds peft's files and Muse's ``manifest.json`` (how it was trained, and
the ``fusion_weight`` validation chose for it); the registry's ``promoted.json`` names the
adapter serving now. Every rule about choosing an adapter lives here.
"""

from __future__ import annotations

import json
from pathlib import Path

from agent.config import Settings
from agent.llm.engine import UnknownAdapterError

PROMOTED_FILE = "promoted.json"  # in the registry: the serving ranker adapter and its promotions
TEXT_PROMOTED_FILE = "promoted_text.json"  # the serving text adapter and its promotions


def discover_adapters(folder: Path | None) -> dict[str, Path]:
    """Every sub-folder of ``folder`` holding a peft adapter, by its name."""
    if folder is None or not folder.is_dir():
        return {}
    return {p.name: p for p in sorted(folder.iterdir()) if (p / "adapter_config.json").exists()}


def adapters(settings: Settings) -> dict[str, Path]:
    """The registry the settings name, as it is now (adapters can be added while serving)."""
    return discover_adapters(settings.adapters_dir)


def read_manifest(path: Path) -> dict:
    """An adapter's ``manifest.json`` ({} when it has none)."""
    file = path / "manifest.json"
    return json.loads(file.read_text()) if file.exists() else {}


def promoted_adapter(registry: Path, file_name: str = PROMOTED_FILE) -> str | None:
    """The adapter `muse finetune promote` (``promote-text`` for ``TEXT_PROMOTED_FILE``) last
    made the serving one, or None."""
    file = Path(registry) / file_name
    return json.loads(file.read_text())["serving"] if file.exists() else None


def check_adapter(name: str | None, registered: dict[str, Path]) -> None:
    """Raises ``UnknownAdapterError`` when ``name`` is not registered (None is the base model)."""
    if name is not None and name not in registered:
        raise UnknownAdapterError(name, list(registered))


def ranker_adapter(settings: Settings) -> str | None:
    """The configured ranker adapter (it must be registered), else the one last promoted, else
    the newest ``rank-*``, else None (the base model). Raises ``UnknownAdapterError``."""
    registered = adapters(settings)
    chosen = settings.rank_adapter or promoted_adapter(settings.adapters_dir)
    if chosen:
        check_adapter(chosen, registered)
        return chosen
    ranked = sorted(n for n in registered if n.startswith("rank-"))
    return ranked[-1] if ranked else None


def ab_arms(settings: Settings) -> list[str]:
    """The A/B arms (each must be registered), or [] when no split is configured. Raises
    ``UnknownAdapterError``."""
    arms = [a.strip() for a in (settings.ab_adapters or "").split(",") if a.strip()]
    registered = adapters(settings)
    for arm in arms:
        check_adapter(arm, registered)
    return arms


def fusion_weight_of(adapter_dir: Path | None) -> float:
    """The fusion weight validation chose for an adapter (its manifest's ``fusion_weight``,
    written by ``muse eval --stage rerank --record-weight`` or a promotion); 0.0 when none was
    recorded: a ranker nobody validated is not used. Raises ``ValueError`` outside [0, 1]."""
    if adapter_dir is None:
        return 0.0
    weight = float(read_manifest(adapter_dir).get("fusion_weight", 0.0))
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"{adapter_dir}/manifest.json: fusion_weight {weight} outside [0, 1]")
    return weight


def fusion_weight(settings: Settings, adapter: str | None) -> float:
    """The weight served for a ranker adapter: ``MUSE_RANK_WEIGHT`` when set, else the
    adapter's validated weight (0 for the base model or an adapter without one)."""
    if adapter is None:
        return 0.0
    if settings.rank_weight is not None:
        return settings.rank_weight
    return fusion_weight_of(adapters(settings).get(adapter))


def text_adapter(settings: Settings) -> str | None:
    """The adapter that writes the texts: ``MUSE_TEXT_ADAPTER`` (it must be registered; 'none':
    the base model), else the one `muse finetune promote-text` last promoted, else None (the
    base model). Never picked by name alone: a text adapter serves only once it is promoted or
    named. It is served folded into the text model's checkpoint (``text_checkpoint``), so it
    cannot ride with ranker adapters served as LoRA on the same engine. Raises
    ``UnknownAdapterError``, or ``ValueError`` with ``MUSE_RANK_ENGINE=lora``."""
    if settings.text_adapter == "none":
        return None
    chosen = settings.text_adapter or promoted_adapter(settings.adapters_dir, TEXT_PROMOTED_FILE)
    if chosen:
        check_adapter(chosen, adapters(settings))
        if settings.rank_engine == "lora":
            raise ValueError(
                f"text adapter {chosen!r} is served merged into the LLM's checkpoint, which MUSE_RANK_ENGINE=lora "
                "shares with the ranker adapters; set MUSE_TEXT_ADAPTER=none or MUSE_RANK_ENGINE=merged"
            )
    return chosen


def text_checkpoint(settings: Settings) -> Path:
    """The checkpoint the LLM engine serves: the packaged (or configured) base model, or, with a
    text adapter (``text_adapter``), that adapter merged into a copy of it (written once under
    ``MUSE_DATA_DIR/merged``: the CPU serves it at the base model's cost, where vLLM's LoRA path
    cost 5x, README "The LLM ranker")."""
    from agent.llm.merged import merged_checkpoint
    from agent.llm.model_files import model_path

    adapter = text_adapter(settings)
    if adapter is None:
        return model_path(settings)
    return merged_checkpoint(model_path(settings), adapters(settings)[adapter], settings.data_dir)

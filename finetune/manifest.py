"""What every trainer writes beside its adapter as ``manifest.json``: how it was trained (kind,
base model, command, config) and its training figures, plus each trainer's own fields. The
registry (``agent.llm.registry.read_manifest``) and promotion read it back."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path


def training_manifest(
    kind: str, cfg, model_dir: Path, result, started: float, config_extra: dict | None = None, **fields
) -> dict:
    """The manifest of one training run. ``cfg``: the trainer's dataclass config (paths written as
    strings); ``result``: the ``Trainer.train`` output (its ``training_loss``); ``started``: the
    run's ``time.perf_counter()`` at its start; ``config_extra``: settings added to ``config``
    (e.g. the prompt settings an adapter inherits); ``fields``: the trainer's own entries."""
    return {
        "kind": kind,
        "base_model": str(model_dir),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "config": {
            **{k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
            **(config_extra or {}),
        },
        "train_loss": result.training_loss,
        "train_seconds": round(time.perf_counter() - started, 1),
        "created_at": time.time(),
        **fields,
    }

"""A ranker adapter folded into a copy of the base weights (peft's ``merge_and_unload``).

On these CPUs vLLM's LoRA path made a 1-token ranking call about 5x slower than the base model
(2.7 s against 0.56 s, README "The LLM ranker"), and serving with LoRA enabled slowed the base
model's own requests too. A merged checkpoint has no LoRA cost at all: the service scores it
in-process (``MUSE_RANK_ENGINE=transformers``, the default), and the vLLM server serves only
the base model, for the texts. The merged folder is written once per (base, adapter) pair under
the data folder (``MUSE_DATA_DIR/merged``) and reused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path


def adapter_fingerprint(base_dir: Path, adapter_dir: Path) -> str:
    """A short hash of the base model's path and the adapter's config and weights."""
    digest = hashlib.sha256(str(Path(base_dir).resolve()).encode())
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        file = Path(adapter_dir) / name
        if file.exists():
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def merged_checkpoint(base_dir: Path, adapter_dir: Path, folder: Path) -> Path:
    """The folder of ``adapter_dir`` merged into ``base_dir``'s weights, written on first call
    (atomically: a half-written folder is never used) under ``folder/merged/``.

    Raises FileNotFoundError when the adapter folder holds no peft adapter."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").exists():
        raise FileNotFoundError(f"{adapter_dir} holds no peft adapter (adapter_config.json)")
    target = Path(folder) / "merged" / f"{adapter_dir.name}-{adapter_fingerprint(base_dir, adapter_dir)}"
    if (target / "config.json").exists():
        return target
    config = json.loads((Path(base_dir) / "config.json").read_text())
    stored = getattr(torch, config.get("dtype") or config.get("torch_dtype") or "float32")
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    # Merged in float32, stored in the base checkpoint's own dtype (bfloat16 for the packaged
    # model); the engine loads it in the dtype this machine computes fastest.
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload().to(stored)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    merged.save_pretrained(partial)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(partial)
    partial.rename(target)
    return target

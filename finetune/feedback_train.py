"""`muse finetune train`: a new ranker adapter from feedback data (SFT, DPO or KTO).

The data is a ``muse finetune build-data`` folder. The new adapter starts from a parent (a
registered adapter, by default the one serving now) or, with ``--parent none``, from a fresh
LoRA on the base model. It is written into the adapter registry under a new name, with a
``manifest.json`` (parent, data hash, config, training figures); nothing is written there
until training has finished. Checkpoints go to ``work_dir`` and a restarted run resumes from
the newest one.

- ``sft``: cross-entropy over the candidate labels only (``rank_sft``'s loss), the engaged
  item's label as the target.
- ``dpo``: TRL's ``DPOTrainer`` on (prompt, engaged label, skipped label) pairs. Starting from a
  parent adapter, TRL keeps a frozen copy of it as the reference. Direct Preference
  Optimization: Rafailov et al., "Direct Preference Optimization: Your Language Model is
  Secretly a Reward Model", NeurIPS 2023.
- ``kto``: TRL's ``KTOTrainer`` on unpaired thumbs up/down. Ethayarajh et al., "KTO: Model
  Alignment as Prospect Theoretic Optimization", ICML 2024.

Ready-to-paste commands (repository root; ``MUSE_DATA_DIR`` names the event store)::

    muse finetune build-data --out .muse/feedback
    muse finetune train --method dpo --data .muse/feedback --name rank-dpo-1
    muse finetune train --method sft --data .muse/feedback --name rank-sft-1 --parent none --max_steps 2
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent.llm import registry
from agent.llm.hardware import resolve_dtype
from agent.llm.registry import read_manifest
from finetune.base_config import train_resuming
from finetune.manifest import training_manifest

logger = logging.getLogger(__name__)

METHODS = ("sft", "dpo", "kto")


@dataclass
class FeedbackTrainConfig:
    method: str = field(metadata={"help": "sft (label loss on engaged items), dpo (engaged over skipped) or kto"})
    data: Path = field(metadata={"help": "a `muse finetune build-data` folder"})
    name: str = field(metadata={"help": "registry name of the new adapter (must be new)"})
    registry: Path = field(metadata={"help": "the adapter registry (default: MUSE_ADAPTERS_DIR)"})
    parent: str | None = field(
        default="current",
        metadata={
            "help": "registered adapter to start from; 'current': the serving ranker adapter; 'none': a fresh LoRA"
        },
    )
    model_dir: Path | None = field(default=None, metadata={"help": "base checkpoint; default: the packaged model"})
    work_dir: Path | None = field(
        default=None, metadata={"help": "checkpoints (resume point); default DATA/runs/NAME"}
    )
    learning_rate: float = field(default=3e-4, metadata={"help": "peak learning rate (linear decay)"})
    batch_size: int = field(default=8, metadata={"help": "rows per step"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the rows"})
    max_steps: int = field(default=-1, metadata={"help": "stop after this many steps (-1: epochs decide)"})
    warmup_steps: int = field(default=5, metadata={"help": "linear warm-up steps"})
    save_steps: int = field(default=50, metadata={"help": "checkpoint every N steps"})
    beta: float = field(default=0.1, metadata={"help": "DPO/KTO: strength of the pull towards the reference"})
    lora_r: int = field(default=16, metadata={"help": "fresh adapters only: LoRA rank"})
    top_layers: int = field(default=10, metadata={"help": "fresh adapters only: LoRA on the top N layers"})
    dtype: str = field(
        default="auto",
        metadata={
            "help": "training dtype of the base weights; auto = bfloat16 "
            "where the hardware computes it natively, else float32"
        },
    )
    seed: int = field(default=0, metadata={"help": "seed of shuffling and initialisation"})

    def resolve(self, current: str | None) -> FeedbackTrainConfig:
        """``parent`` 'current' -> the serving ranker adapter, 'none' -> None."""
        if self.parent == "current":
            self.parent = current
        elif self.parent in ("none", ""):
            self.parent = None
        return self

    def check(self) -> None:
        """Fail before any work on what can be told up front."""
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {', '.join(METHODS)}")
        if not (Path(self.data) / f"{self.method}_train.jsonl").exists():
            raise ValueError(f"{self.data} has no {self.method}_train.jsonl: run `muse finetune build-data` first")
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"bad adapter name {self.name!r}")
        if (Path(self.registry) / self.name).exists():
            raise ValueError(f"adapter {self.name!r} already exists in {self.registry}; pick a new name")
        if self.parent and not (Path(self.registry) / self.parent / "adapter_config.json").exists():
            raise ValueError(f"parent adapter {self.parent!r} is not registered in {self.registry}")


def sft_rows(rows: list[dict], tokenizer, label_ids: dict[str, int]) -> list[dict]:
    """``{"messages"}`` rows -> token ids, the answer (one label token) as the only target."""
    from agent.llm.engine import prompt_ids
    from finetune.rank_sft import label_row

    out = []
    for row in rows:
        *prompt, answer = row["messages"]
        out.append(label_row(prompt_ids(tokenizer, prompt), label_ids[answer["content"]]))
    return out


def _model(cfg: FeedbackTrainConfig, model_dir: Path):
    """The base model with the parent adapter (trainable), or the base alone plus a LoRA config."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from finetune.rank_sft import top_layers_lora

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, resolve_dtype(cfg.dtype)))
    if cfg.parent:
        return PeftModel.from_pretrained(model, Path(cfg.registry) / cfg.parent, is_trainable=True), None
    return model, top_layers_lora(model_dir, cfg.lora_r, 2 * cfg.lora_r, 0.05, cfg.top_layers)


def train(cfg: FeedbackTrainConfig) -> Path:
    """Train and register the adapter; returns its registry folder."""
    import torch
    from datasets import Dataset, load_dataset
    from transformers import AutoTokenizer

    from agent.llm.engine import single_token_ids
    from agent.llm.model_files import ensure_checkpoint
    from agent.pipeline.ranker import LABELS

    cfg.check()
    started = time.perf_counter()
    data = Path(cfg.data)
    report = json.loads((data / "report.json").read_text()) if (data / "report.json").exists() else {}
    rows = load_dataset("json", data_files=str(data / f"{cfg.method}_train.jsonl"), split="train")
    if len(rows) == 0:
        raise ValueError(f"{data / f'{cfg.method}_train.jsonl'} is empty: no feedback of that kind yet")
    if "user_id" in rows.column_names:  # kept for forget-me; the model never sees who it was
        rows = rows.remove_columns("user_id")
    model_dir = Path(cfg.model_dir) if cfg.model_dir else ensure_checkpoint()
    work = Path(cfg.work_dir) if cfg.work_dir else data / "runs" / cfg.name
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model, lora = _model(cfg, model_dir)
    common = {
        "output_dir": str(work / "checkpoints"),
        "per_device_train_batch_size": cfg.batch_size,
        "learning_rate": cfg.learning_rate,
        "lr_scheduler_type": "linear",
        "warmup_steps": cfg.warmup_steps,
        "num_train_epochs": cfg.epochs,
        "max_steps": cfg.max_steps,
        "save_steps": cfg.save_steps,
        "save_total_limit": 2,
        "logging_steps": 10,
        "seed": cfg.seed,
        "report_to": "none",
        "bf16": False,  # TRL's default bf16 autocast fails on CPU
        "gradient_checkpointing": False,  # keeps the backward pass above the lowest LoRA layer
        "use_cpu": not torch.cuda.is_available(),
    }
    logger.info(f"{cfg.method}: {len(rows)} rows from {data}, starting from {cfg.parent or 'a fresh LoRA'}")
    if cfg.method == "sft":
        from trl import SFTConfig

        from finetune.rank_sft import label_trainer_class

        labels = dict(zip(LABELS, single_token_ids(tokenizer, LABELS)))
        dataset = Dataset.from_list(sft_rows(list(rows), tokenizer, labels))
        trainer = label_trainer_class()(
            model=model,
            args=SFTConfig(**common, max_length=None, dataloader_drop_last=False),
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=lora,
            label_ids=list(labels.values()),
        )
    elif cfg.method == "dpo":
        from trl import DPOConfig, DPOTrainer

        trainer = DPOTrainer(
            model=model,
            args=DPOConfig(**common, beta=cfg.beta),
            train_dataset=rows,
            processing_class=tokenizer,
            peft_config=lora,
        )
    else:
        from trl import KTOConfig, KTOTrainer

        trainer = KTOTrainer(
            model=model,
            args=KTOConfig(**common, beta=cfg.beta),
            train_dataset=rows,
            processing_class=tokenizer,
            peft_config=lora,
        )
    result = train_resuming(trainer, common["output_dir"])

    parent_manifest = read_manifest(Path(cfg.registry) / cfg.parent) if cfg.parent else {}
    prompt = report.get("prompt") or {
        k: v for k, v in parent_manifest.get("config", {}).items() if k in ("history_items", "title_chars")
    }
    manifest = training_manifest(
        "ranker",
        cfg,
        model_dir,
        result,
        started,
        method=cfg.method,
        parent=cfg.parent,
        data=str(data),
        data_hash=report.get("data_hash"),
        rows=len(rows),
        config_extra=prompt,
    )
    # Written next to the registry under a hidden name, then renamed: a crash leaves no half entry.
    partial = Path(cfg.registry) / f".{cfg.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    trainer.model.save_pretrained(partial, selected_adapters=["default"])  # not TRL's "ref" copy
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=2))
    final = Path(cfg.registry) / cfg.name
    partial.replace(final)
    logger.info(f"adapter {cfg.name!r} registered in {final} (train loss {result.training_loss:.4f})")
    return final


def config_from_args(argv: list[str], settings) -> FeedbackTrainConfig:
    """The command line's config: the registry defaults to the settings' one, and the parent
    'current' is the serving ranker adapter."""
    if "--registry" not in argv:
        argv = [*argv, "--registry", str(settings.adapters_dir)]
    from transformers import HfArgumentParser

    (cfg,) = HfArgumentParser(FeedbackTrainConfig).parse_args_into_dataclasses(argv)
    return cfg.resolve(registry.ranker_adapter(settings))


def main(argv: list[str] | None = None) -> int:
    from agent.config import Settings

    train(config_from_args(sys.argv[1:] if argv is None else argv, Settings()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The knobs every LoRA trainer of Muse shares, declared once (after TRL's ``_BaseConfig``: the
shared defaults in one base, each trainer's config only its own knobs).

A trainer's config subclasses ``LoRATrainConfig`` (keyword-only, so a subclass may add required
fields), may redeclare a shared field to change its default, and builds its
``transformers.TrainingArguments`` (or TRL's subclass of it) from ``training_arguments``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(kw_only=True)
class LoRATrainConfig:
    output_dir: Path = field(metadata={"help": "checkpoints and the final adapter (output_dir/adapter)"})
    model_dir: Path | None = field(
        default=None, metadata={"help": "base HF checkpoint; default: the packaged SmolLM2"}
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    top_layers: int = field(default=10, metadata={"help": "LoRA on the top N transformer layers only"})
    learning_rate: float = field(default=1e-3, metadata={"help": "peak learning rate (linear decay)"})
    batch_size: int = field(default=8, metadata={"help": "examples per step"})
    warmup_steps: int = field(default=10, metadata={"help": "linear warm-up steps"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the examples"})
    max_steps: int = field(default=-1, metadata={"help": "stop after this many steps (-1: epochs decide)"})
    save_steps: int = field(default=25, metadata={"help": "checkpoint every N steps (resume point)"})
    seed: int = field(default=0, metadata={"help": "seed of sampling, shuffling and training"})
    dtype: str = field(
        default="auto",
        metadata={
            "help": "dtype of the base weights in training; auto = bfloat16 where the CPU or GPU "
            "computes it natively, else float32 (agent.llm.hardware.resolve_dtype)"
        },
    )

    def torch_dtype(self):
        """``dtype`` as a ``torch.dtype`` (``auto`` resolved for this machine)."""
        import torch

        from agent.llm.hardware import resolve_dtype

        return getattr(torch, resolve_dtype(self.dtype))

    def training_arguments(self) -> dict:
        """The keyword arguments of ``TrainingArguments`` these knobs set, with Muse's CPU
        defaults: checkpoints in ``output_dir/checkpoints`` (two kept), no reporting, the last
        short batch kept, no gradient checkpointing (it would make the embeddings require grad,
        so the backward pass would run through every layer instead of stopping at the lowest LoRA
        layer), and bf16 autocast only on a GPU (it fails on CPU; the model is loaded in the
        CPU's dtype instead)."""
        import torch

        return {
            "output_dir": str(Path(self.output_dir) / "checkpoints"),
            "per_device_train_batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "lr_scheduler_type": "linear",
            "warmup_steps": self.warmup_steps,
            "num_train_epochs": self.epochs,
            "max_steps": self.max_steps,
            "save_steps": self.save_steps,
            "save_total_limit": 2,
            "logging_steps": 10,
            "seed": self.seed,
            "report_to": "none",
            "dataloader_drop_last": False,
            "bf16": torch.cuda.is_available(),
            "gradient_checkpointing": False,
        }


def train_resuming(trainer, checkpoints: str | Path):
    """``trainer.train()``, resumed from the newest checkpoint in ``checkpoints`` when there is
    one (a killed run picks up where it stopped). The Trainer's own log lines go to stderr:
    stdout is for results. Returns the Trainer's ``TrainOutput``."""
    import contextlib
    import logging
    import sys

    from transformers.trainer_utils import get_last_checkpoint

    resume = get_last_checkpoint(str(checkpoints)) if Path(checkpoints).is_dir() else None
    if resume:
        logging.getLogger(__name__).info(f"resuming from {resume}")
    with contextlib.redirect_stdout(sys.stderr):
        return trainer.train(resume_from_checkpoint=resume)

"""`muse finetune train`: a new ranker adapter from feedback data (SFT, DPO or KTO).

The data is a ``muse finetune build-data`` folder. The new adapter starts from a parent (a
registered adapter, by default the one serving now) or, with ``--parent none``, from a fresh
LoRA on the base model. It is written into the adapter registry under a new name, with a
``manifest.json`` (parent, data hash, config, training figures); nothing is written there
until training has finished. Checkpoints go to ``--output_dir`` (default DATA/runs/NAME) and a
restarted run resumes from the newest one. ``FeedbackJob`` says what to learn from and where the
adapter goes; ``FeedbackTrainConfig`` how (the shared LoRA/trainer knobs of
``finetune.base_config.LoRATrainConfig`` plus the method's own).

- ``sft``: cross-entropy over the candidate labels only (``rank_sft``'s loss), the engaged
  item's label as the target.
- ``dpo``: TRL's ``DPOTrainer`` on (prompt, engaged label, skipped label) pairs. Starting from a
  parent adapter, TRL keeps a frozen copy of it as the reference. Direct Preference
  Optimization: Rafailov et al., "Direct Preference Optimization: Your Language Model is
  Secretly a Reward Model", NeurIPS 2023.
- ``kto``: TRL's ``KTOTrainer`` on unpaired thumbs up/down. Ethayarajh et al., "KTO: Model
  Alignment as Prospect Theoretic Optimization", ICML 2024.

A *text* adapter (the one that writes explanations and pitches) trains the same way from the
texts' rows:

- ``text_sft``: cross-entropy over the continuation Muse asked the model for (after Muse's own
  start), from ``muse finetune text-data`` (the model's best checked samples) or from texts
  readers liked (``build-data``); the prompt and the start are exactly what the engines send;
- ``text_dpo`` / ``text_kto``: TRL's trainers on texts rated by readers (``build-data``).

A text adapter serves once ``muse finetune promote-text`` has found it better on held-out picks.

Ready-to-paste commands (repository root; ``MUSE_DATA_DIR`` names the event store)::

    muse finetune build-data --out .muse/feedback
    muse finetune train --method dpo --data .muse/feedback --name rank-dpo-1
    muse finetune train --method sft --data .muse/feedback --name rank-sft-1 --parent none --max_steps 2
    muse finetune train --method text_sft --data .muse/text-data --name text-sft-1 --parent none
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from agent.llm import registry
from agent.llm.registry import read_manifest
from finetune.base_config import LoRATrainConfig, train_resuming
from finetune.manifest import training_manifest

logger = logging.getLogger(__name__)

METHODS = ("sft", "dpo", "kto", "text_sft", "text_dpo", "text_kto")
TEXT_METHODS = ("text_sft", "text_dpo", "text_kto")  # train a text adapter (the rest: a ranker adapter)


@dataclass
class FeedbackJob:
    """What one `muse finetune train` run learns from and where its adapter goes."""

    data: Path = field(metadata={"help": "a `muse finetune build-data` folder"})
    name: str = field(metadata={"help": "registry name of the new adapter (must be new)"})
    registry: Path = field(metadata={"help": "the adapter registry (default: MUSE_ADAPTERS_DIR)"})
    parent: str | None = field(
        default="current",
        metadata={
            "help": "registered adapter to start from; 'current': the serving ranker (text methods: text) "
            "adapter; 'none': a fresh LoRA"
        },
    )

    def resolve(self, current: str | None) -> FeedbackJob:
        """``parent`` 'current' -> the serving ranker adapter ``current``, 'none' -> None."""
        if self.parent == "current":
            self.parent = current
        elif self.parent in ("none", ""):
            self.parent = None
        return self


@dataclass(kw_only=True)
class FeedbackTrainConfig(LoRATrainConfig):
    """How a feedback adapter is trained: the method and its own knobs; the LoRA and trainer
    knobs are ``LoRATrainConfig``'s (LoRA rank, layers and dropout apply to a fresh adapter only:
    a child keeps its parent's layout)."""

    method: str = field(
        default="sft",
        metadata={
            "help": "sft (label loss on engaged items), dpo (engaged over skipped), kto; text_sft (the "
            "continuation's loss), text_dpo, text_kto: a text adapter"
        },
    )
    output_dir: Path | None = field(
        default=None, metadata={"help": "checkpoints (the resume point); default DATA/runs/NAME"}
    )
    learning_rate: float = field(default=3e-4, metadata={"help": "peak learning rate (linear decay)"})
    warmup_steps: int = field(default=5, metadata={"help": "linear warm-up steps"})
    save_steps: int = field(default=50, metadata={"help": "checkpoint every N steps (resume point)"})
    beta: float = field(default=0.1, metadata={"help": "DPO/KTO: strength of the pull towards the reference"})


def check(job: FeedbackJob, cfg: FeedbackTrainConfig) -> None:
    """Fail before any work on what can be told up front. Raises ``ValueError`` saying what is wrong."""
    if cfg.method not in METHODS:
        raise ValueError(f"unknown method {cfg.method!r}; expected one of {', '.join(METHODS)}")
    if not (Path(job.data) / f"{cfg.method}_train.jsonl").exists():
        raise ValueError(f"{job.data} has no {cfg.method}_train.jsonl: run `muse finetune build-data` first")
    if not job.name or "/" in job.name or job.name.startswith("."):
        raise ValueError(f"bad adapter name {job.name!r}")
    if (Path(job.registry) / job.name).exists():
        raise ValueError(f"adapter {job.name!r} already exists in {job.registry}; pick a new name")
    if job.parent and not (Path(job.registry) / job.parent / "adapter_config.json").exists():
        raise ValueError(f"parent adapter {job.parent!r} is not registered in {job.registry}")


def sft_rows(rows: list[dict], tokenizer, label_ids: dict[str, int]) -> list[dict]:
    """``{"messages"}`` rows -> token ids, the answer (one label token) as the only target."""
    from agent.llm.engine import prompt_ids
    from finetune.rank_sft import label_row

    out = []
    for row in rows:
        *prompt, answer = row["messages"]
        out.append(label_row(prompt_ids(tokenizer, prompt), label_ids[answer["content"]]))
    return out


def text_sft_rows(rows: list[dict], tokenizer) -> list[dict]:
    """``{"prompt", "prefix", "completion"}`` rows -> ``{"input_ids", "completion_mask"}``: the
    prompt and Muse's start as the engines send them (``continuation_ids``), then the
    continuation and the end of the turn, the only tokens with a loss (mask 1)."""
    from agent.llm.engine import TextJob
    from agent.llm.transformers_engine import continuation_ids

    out = []
    for row in rows:
        head = continuation_ids(tokenizer, TextJob(row["prompt"], row["prefix"]))
        tail = tokenizer.encode(row["completion"], add_special_tokens=False) + [tokenizer.eos_token_id]
        out.append({"input_ids": head + tail, "completion_mask": [0] * len(head) + [1] * len(tail)})
    return out


def load_rows(job: FeedbackJob, method: str):
    """The method's training rows of the build-data folder (a ``datasets.Dataset``; the
    ``user_id`` column, kept there for forget-me, dropped: the model never sees who it was) and
    the folder's ``report.json`` ({} when absent). Raises ``ValueError`` when there are none."""
    from datasets import load_dataset

    data = Path(job.data)
    report = json.loads((data / "report.json").read_text()) if (data / "report.json").exists() else {}
    rows = load_dataset("json", data_files=str(data / f"{method}_train.jsonl"), split="train")
    if len(rows) == 0:
        raise ValueError(f"{data / f'{method}_train.jsonl'} is empty: no feedback of that kind yet")
    if "user_id" in rows.column_names:
        rows = rows.remove_columns("user_id")
    return rows, report


def load_model(job: FeedbackJob, cfg: FeedbackTrainConfig, model_dir: Path):
    """``(model, peft_config)``: the base model with the parent adapter loaded trainable (no
    config: the parent's layout is kept), or the base alone and a fresh top-layers LoRA config."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from finetune.rank_sft import top_layers_lora

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=cfg.torch_dtype())
    if job.parent:
        return PeftModel.from_pretrained(model, Path(job.registry) / job.parent, is_trainable=True), None
    return model, top_layers_lora(model_dir, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.top_layers)


def method_trainer(cfg: FeedbackTrainConfig, model, lora, tokenizer, rows):
    """The trainer of ``cfg.method`` over ``rows``: ``sft`` the label-only loss of
    ``rank_sft.label_trainer_class``; ``dpo`` and ``kto`` TRL's ``DPOTrainer`` / ``KTOTrainer``."""
    args = cfg.training_arguments()
    if cfg.method == "text_sft":
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        return SFTTrainer(
            model=model,
            args=SFTConfig(**args, max_length=None, completion_only_loss=True),
            train_dataset=Dataset.from_list(text_sft_rows(list(rows), tokenizer)),
            processing_class=tokenizer,
            peft_config=lora,
        )
    if cfg.method == "sft":
        from datasets import Dataset
        from trl import SFTConfig

        from agent.llm.engine import single_token_ids
        from agent.pipeline.ranker import LABELS
        from finetune.rank_sft import label_trainer_class

        labels = dict(zip(LABELS, single_token_ids(tokenizer, LABELS)))
        return label_trainer_class()(
            model=model,
            args=SFTConfig(**args, max_length=None),
            train_dataset=Dataset.from_list(sft_rows(list(rows), tokenizer, labels)),
            processing_class=tokenizer,
            peft_config=lora,
            label_ids=list(labels.values()),
        )
    if cfg.method in ("dpo", "text_dpo"):
        from trl import DPOConfig as MethodConfig
        from trl import DPOTrainer as MethodTrainer
    else:
        from trl import KTOConfig as MethodConfig
        from trl import KTOTrainer as MethodTrainer
    return MethodTrainer(
        model=model,
        args=MethodConfig(**args, beta=cfg.beta),
        train_dataset=rows,
        processing_class=tokenizer,
        peft_config=lora,
    )


def register(trainer, registry: Path, name: str, manifest: dict) -> Path:
    """Save the trained adapter and its manifest as ``registry/name``: written under a hidden
    name, then renamed, so a crash leaves no half entry. Returns the entry's folder."""
    partial = Path(registry) / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    trainer.model.save_pretrained(partial, selected_adapters=["default"])  # not TRL's "ref" copy
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=2))
    final = Path(registry) / name
    partial.replace(final)
    return final


def train(job: FeedbackJob, cfg: FeedbackTrainConfig) -> Path:
    """Train ``job``'s adapter as ``cfg`` says and register it; returns its registry folder.
    Raises ``ValueError`` (``check``, ``load_rows``) before any training on a bad request."""
    from transformers import AutoTokenizer

    from agent.llm.model_files import ensure_checkpoint

    check(job, cfg)
    started = time.perf_counter()
    rows, report = load_rows(job, cfg.method)
    model_dir = Path(cfg.model_dir) if cfg.model_dir else ensure_checkpoint()
    cfg = replace(cfg, model_dir=model_dir, output_dir=cfg.output_dir or Path(job.data) / "runs" / job.name)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model, lora = load_model(job, cfg, model_dir)
    logger.info(f"{cfg.method}: {len(rows)} rows from {job.data}, starting from {job.parent or 'a fresh LoRA'}")
    trainer = method_trainer(cfg, model, lora, tokenizer, rows)
    result = train_resuming(trainer, cfg.training_arguments()["output_dir"])

    parent_manifest = read_manifest(Path(job.registry) / job.parent) if job.parent else {}
    prompt = report.get("prompt") or {
        k: v for k, v in parent_manifest.get("config", {}).items() if k in ("history_items", "title_chars")
    }
    manifest = training_manifest(
        "text" if cfg.method in TEXT_METHODS else "ranker",
        cfg,
        model_dir,
        result,
        started,
        method=cfg.method,
        parent=job.parent,
        data=str(job.data),
        data_hash=report.get("data_hash"),
        rows=len(rows),
        config_extra=prompt,
    )
    final = register(trainer, job.registry, job.name, manifest)
    logger.info(f"adapter {job.name!r} registered in {final} (train loss {result.training_loss:.4f})")
    return final


def config_from_args(argv: list[str], settings) -> tuple[FeedbackJob, FeedbackTrainConfig]:
    """The command line's job and config: the registry defaults to the settings' one, and the
    parent 'current' is the serving ranker adapter."""
    if "--registry" not in argv:
        argv = [*argv, "--registry", str(settings.adapters_dir)]
    from transformers import HfArgumentParser

    job, cfg = HfArgumentParser((FeedbackJob, FeedbackTrainConfig)).parse_args_into_dataclasses(argv)
    current = registry.text_adapter(settings) if cfg.method in TEXT_METHODS else registry.ranker_adapter(settings)
    return job.resolve(current), cfg


def main(argv: list[str] | None = None) -> int:
    from agent.config import Settings

    train(*config_from_args(sys.argv[1:] if argv is None else argv, Settings()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

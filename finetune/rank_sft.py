"""LlamaRec-style ranker tuning: a LoRA adapter that picks the next item's label (Yue et al.,
"LlamaRec: Two-Stage Recommendation using Large Language Models for Ranking", 2023; LoRA: Hu et
al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022).

Each example is the ranking prompt at inference (recent history + the retriever's 20
candidates, in retrieval order, under labels A-T) and the label of the item the user really
chose next. The loss is cross-entropy over the 20 label logits only, read from the last
prompt token: the last hidden state times the 20 label rows of the (tied) output embedding, so
the 49k-way vocabulary projection is never computed. LoRA sits on every linear layer of the top
``top_layers`` transformer layers only, so the backward pass stops there. Measured on this
2-core CPU: about 6.5 s per step of 8 examples (4,000 examples took 61 min).

Ready-to-paste commands (run from the repository root)::

    # adapters/rank-v2: the retriever never saw the answers it ranks (1,941 examples, 26 min);
    # resumes from the last checkpoint if stopped
    .venv/bin/python -m finetune.rank_sft --data ../shared/data/ml-latest-small \\
        --output_dir .muse/train/rank-v2 --unseen_positions 16 --examples 4000

    # rank-v4 (not registered): the same examples, residual training on the retrieval prior
    # (reuses rank-v3's retriever: copy .muse/train/rank-v3/retriever into the output folder first)
    .venv/bin/python -m finetune.rank_sft --data ../shared/data/ml-latest-small \\
        --output_dir .muse/train/rank-v4 --unseen_positions 16 --examples 2000 --retrieval_prior

    # then register it: adapters/<name>/ holds the peft adapter + manifest.json
    cp -r .muse/train/rank-v2/adapter adapters/rank-v2

    # a 2-step smoke run
    .venv/bin/python -m finetune.rank_sft --data ../shared/data/ml-latest-small \\
        --output_dir /tmp/rank-smoke --examples 16 --max_steps 2
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from agent.llm.engine import prompt_ids
from agent.pipeline.ranker import LABELS, PromptConfig, RankRequest, rank_conversation, standardize
from finetune.base_config import LoRATrainConfig, train_resuming
from finetune.manifest import training_manifest
from finetune.rank_data import MIN_HISTORY, RankExample

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class RankSFTConfig(LoRATrainConfig):
    data: Path = field(metadata={"help": "dataset folder (e.g. ml-latest-small)"})
    examples: int = field(default=3200, metadata={"help": "training examples drawn from the sequences"})
    positions_per_user: int = field(default=16, metadata={"help": "last positions of each training sequence used"})
    unseen_positions: int = field(
        default=0,
        metadata={
            "help": (
                "0: candidates from the retriever fitted on all training items (it has seen each answer). "
                "N > 0: fit the retriever without each user's last N training items and train on exactly "
                "those positions, so candidates look as they do at inference; 20% of users are held out"
            )
        },
    )
    warmup_steps: int = field(default=20, metadata={"help": "linear warm-up steps"})
    save_steps: int = field(default=50, metadata={"help": "checkpoint every N steps (resume point)"})
    history_items: int = field(default=8, metadata={"help": "history titles in the prompt"})
    title_chars: int = field(default=28, metadata={"help": "titles cut to this many characters"})
    retrieval_prior: bool = field(
        default=False,
        metadata={
            "help": (
                "residual training: the loss sees the label logits plus beta * z(retrieval score), with beta the "
                "maximum-likelihood scale on the training examples, so the adapter learns what retrieval order "
                "misses instead of relearning it (its scores are meant to be fused with retrieval's)"
            )
        },
    )

    @property
    def prompt(self) -> PromptConfig:
        return PromptConfig(self.history_items, self.title_chars)


def label_row(prompt: list[int], answer: int) -> dict:
    """A training row whose only target is the answer's one label token after the prompt."""
    return {"input_ids": prompt + [answer], "labels": [-100] * len(prompt) + [answer]}


def tokenize(
    example: RankExample,
    items,
    tokenizer,
    prompt: PromptConfig,
    label_ids: list[int],
    prior_scale: float | None = None,
) -> dict:
    """A training row; with ``prior_scale``, also the retrieval prior the loss adds to the label logits."""
    request = RankRequest.of(example.history, example.candidates, example.scores, items, prompt)
    ids = prompt_ids(tokenizer, rank_conversation(request.history, request.candidates, prompt))
    row = label_row(ids, label_ids[example.target])
    if prior_scale is not None:
        row["prior"] = retrieval_prior(example.scores, prior_scale, len(label_ids))
    return row


# A label with no candidate behind it (fewer than 20 candidates) gets this prior: never the answer.
NO_CANDIDATE = -1e4


def retrieval_prior(scores: list[float], scale: float, n_labels: int) -> list[float]:
    """``scale * z(retrieval score)`` per label, the labels without a candidate ruled out."""
    z = scale * standardize(scores)
    return [float(v) for v in z] + [NO_CANDIDATE] * (n_labels - len(z))


PRIOR_SCALES = tuple(float(v) for v in np.round(np.arange(0.0, 3.0001, 0.05), 2))


def fit_prior_scale(examples: list[RankExample], grid: tuple[float, ...] = PRIOR_SCALES) -> float:
    """The scale of z(retrieval score) whose softmax gives the answers the highest likelihood: the
    best that retrieval order alone can say, which residual training then adds to."""
    if not examples:
        raise ValueError("no training examples to fit the retrieval prior on")
    z = [standardize(e.scores) for e in examples]

    def mean_log_likelihood(scale: float) -> float:
        return float(np.mean([scale * zs[e.target] - np.logaddexp.reduce(scale * zs) for zs, e in zip(z, examples)]))

    return max(grid, key=mean_log_likelihood)


def top_layers_lora(model_dir: Path, r: int, alpha: int, dropout: float, top_layers: int):
    """LoRA on every linear layer of the top ``top_layers`` transformer layers only, so the
    backward pass stops at the lowest of them."""
    from peft import LoraConfig
    from transformers import AutoConfig

    n_layers = AutoConfig.from_pretrained(model_dir).num_hidden_layers
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        layers_to_transform=list(range(max(0, n_layers - top_layers), n_layers)),
    )


def label_trainer_class():
    """``trl.SFTTrainer`` with the loss restricted to the candidate labels (imported lazily:
    trl and torch are heavy). Rows may carry a ``prior`` (see ``retrieval_prior``): it is added to
    the label logits before the cross-entropy."""
    import torch
    import torch.nn.functional as F
    from trl import SFTTrainer

    class LabelRankTrainer(SFTTrainer):
        def __init__(self, *args, label_ids: list[int], **kwargs):
            super().__init__(*args, **kwargs)
            self.label_ids = torch.tensor(label_ids)
            collate = self.data_collator

            def with_prior(rows: list[dict]) -> dict:
                priors = [row.pop("prior") for row in rows] if "prior" in rows[0] else None
                batch = collate(rows)
                if priors is not None:
                    batch["prior"] = torch.tensor(priors, dtype=torch.float32)
                return batch

            self.data_collator = with_prior

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()
            self._signature_columns = [*self._signature_columns, "prior"]  # kept, not dropped

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs["labels"]
            rows = torch.arange(labels.shape[0])
            answer_at = (labels != -100).int().argmax(-1)  # one answer token per row
            causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
            hidden = causal_lm.model(
                input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False
            ).last_hidden_state
            label_ids = self.label_ids.to(labels.device)
            logits = hidden[rows, answer_at - 1] @ causal_lm.lm_head.weight[label_ids].T
            target = (labels[rows, answer_at][:, None] == label_ids[None]).int().argmax(-1)
            logits = logits.float()
            if "prior" in inputs:
                logits = logits + inputs["prior"].to(logits.device)
            loss = F.cross_entropy(logits, target)
            return (loss, {"logits": logits}) if return_outputs else loss

    return LabelRankTrainer


def fit_label_lora(cfg: LoRATrainConfig, model_dir: Path, tokenizer, dataset, label_ids: list[int]):
    """Train a LoRA adapter on ``cfg.top_layers`` of ``model_dir`` with the label-only loss of
    ``label_trainer_class`` over ``dataset`` (rows of ``label_row``, optionally with a ``prior``),
    resuming from the newest checkpoint. Returns ``(trainer, TrainOutput)``; the adapter is
    ``trainer.model``."""
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=cfg.torch_dtype())
    trainer = label_trainer_class()(
        model=model,
        args=SFTConfig(**cfg.training_arguments(), max_length=None),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=top_layers_lora(model_dir, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.top_layers),
        label_ids=label_ids,
    )
    return trainer, train_resuming(trainer, cfg.training_arguments()["output_dir"])


def data_hash(data: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(data).iterdir() if p.is_file()):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def fit_retriever(cfg: RankSFTConfig, proto, out: Path):
    """The retriever the examples' candidates come from, saved in ``out/retriever`` (reused from
    there when present): with ``unseen_positions`` fitted on each user's training sequence
    without its last N items (the training positions), else the protocol's validation fit."""
    from agent.evaluation.retrieval_eval import content_index, fit_for_validation
    from retrieval.hybrid import HybridModel, fit_hybrid

    folder = out / "retriever"
    if (folder / "model.json").exists():
        logger.info(f"reusing the retriever saved in {folder}")
        return HybridModel.load(folder)
    if cfg.unseen_positions:
        # The retriever stops where the training positions (build_examples' last N) begin.
        _, content = content_index(proto, out / "work")
        cut = [s[: max(MIN_HISTORY, len(s) - cfg.unseen_positions)] for s in proto.loo.train().values()]
        retriever = fit_hybrid([i.id for i in proto.items], content, cut, cfg.seed, progress=logger.info)
    else:
        retriever = fit_for_validation(cfg.data, out / "work", cfg.seed).model
    retriever.save(folder)
    return retriever


def split_examples(cfg: RankSFTConfig, retriever, proto) -> tuple[list[RankExample], list[RankExample]]:
    """``(training examples, held-out positions)`` from each user's training sequence
    (everything before the protocol's validation item): with ``unseen_positions``, the last N
    positions, a fifth of the users (by a hash of their id) held out; else each user's last
    training position held out and up to ``positions_per_user`` before it trained on. The
    training examples are shuffled (``seed``), cut to ``examples`` and checked against the
    protocol's validation and test items (``guard_examples`` raises ``LeakError``)."""
    import random

    from finetune.feedback_data import held_out_pairs
    from finetune.rank_data import build_examples, guard_examples

    train_seqs = proto.loo.train()
    if cfg.unseen_positions:
        everything = build_examples(retriever, train_seqs, cfg.unseen_positions, MIN_HISTORY)
        dev_users = {u for u in train_seqs if int(hashlib.sha1(u.encode()).hexdigest(), 16) % 5 == 0}
        examples = [e for e in everything if e.user not in dev_users]
        held_out = [e for e in everything if e.user in dev_users]
    else:
        examples = build_examples(retriever, {u: s[:-1] for u, s in train_seqs.items()}, cfg.positions_per_user)
        held_out = build_examples(retriever, train_seqs, positions_per_user=1)
    random.Random(cfg.seed).shuffle(examples)
    examples = examples[: cfg.examples]
    guard_examples(examples, held_out_pairs(proto.loo.sequences))
    return examples, held_out


def train(cfg: RankSFTConfig) -> Path:
    """Fit the retriever (or reuse the one saved in output_dir), build examples, train, and save
    ``output_dir/adapter`` with its manifest (and its figures on the held-out positions).
    Resumes from the newest checkpoint."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    from agent.evaluation.retrieval_eval import prepare
    from agent.llm.engine import single_token_ids
    from agent.llm.model_files import ensure_checkpoint

    started = time.perf_counter()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = Path(cfg.model_dir) if cfg.model_dir else ensure_checkpoint()
    proto = prepare(cfg.data)
    retriever = fit_retriever(cfg, proto, out)
    examples, held_out = split_examples(cfg, retriever, proto)
    logger.info(f"{len(examples)} training examples, {len(held_out)} held-out positions")
    save_examples(held_out, out / "held_out.jsonl")  # so other adapters can be judged on them
    items = {item.id: item for item in proto.items}

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    label_ids = single_token_ids(tokenizer, LABELS)
    prior_scale = fit_prior_scale(examples) if cfg.retrieval_prior else None
    if prior_scale is not None:
        logger.info(f"residual training on the retrieval prior, scale {prior_scale}")
    rows = [tokenize(e, items, tokenizer, cfg.prompt, label_ids, prior_scale) for e in examples]
    dataset = Dataset.from_list(rows)
    trainer, result = fit_label_lora(cfg, model_dir, tokenizer, dataset, label_ids)

    adapter_dir = out / "adapter"
    trainer.model.save_pretrained(adapter_dir)
    manifest = training_manifest(
        "ranker",
        cfg,
        model_dir,
        result,
        started,
        data=str(cfg.data),
        data_hash=data_hash(cfg.data),
        lora_r=cfg.lora_r,
        examples=len(examples),
        retrieval_prior_scale=prior_scale,
    )
    metrics = held_out_metrics(model_dir, {"tuned": adapter_dir}, held_out, items, cfg.prompt)
    manifest["held_out"] = metrics
    (adapter_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    logger.info(f"adapter saved in {adapter_dir}")
    return adapter_dir


def save_examples(examples: list[RankExample], path: Path) -> None:
    path.write_text("".join(json.dumps(asdict(e)) + "\n" for e in examples))


def load_examples(path: Path) -> list[RankExample]:
    return [RankExample(**json.loads(line)) for line in Path(path).read_text().splitlines() if line]


def held_out_metrics(
    model_dir: Path, adapters: dict[str, Path], examples: list[RankExample], items, prompt: PromptConfig
) -> dict:
    """N@5, N@10 and R@10 on held-out positions: retrieval order, then the base model and each
    adapter alone and fused with retrieval (same prompts, same candidates)."""
    from agent.llm.transformers_engine import TransformersEngine
    from agent.pipeline.ranker import WEIGHT_GRID, Ranker, best_weight, fuse, order
    from retrieval.metrics import ndcg_at, summarize

    if not examples:
        return {}

    def ranks(orders: list[list[int]]) -> list[int]:
        return [o.index(e.target) + 1 for o, e in zip(orders, examples)]

    engine = TransformersEngine(model_dir, adapters)
    requests = [RankRequest.of(e.history, e.candidates, e.scores, items, prompt) for e in examples]
    rows = {"retrieval": [list(range(len(e.candidates))) for e in examples]}
    weights = {}
    for name in (None, *adapters):
        key = name or "zero_shot"
        llm = Ranker(engine, name, prompt=prompt).llm_scores(requests)
        rows[key] = [order(s) for s in llm]
        # The best fusion weight on these same positions: optimistic, but equally so for every model.
        by_weight = {float(w): [order(fuse(e.scores, s, w)) for e, s in zip(examples, llm)] for w in WEIGHT_GRID}
        best = best_weight(lambda w, fused=by_weight: float(np.mean([ndcg_at(r, 10) for r in ranks(fused[w])])))
        rows[f"{key}_fused"], weights[f"{key}_fused"] = by_weight[best], best
    out = {}
    for name, orders in rows.items():
        out[name] = {k: round(v, 4) for k, v in summarize(ranks(orders)).items() if k in ("N@5", "N@10", "R@10")}
        if name in weights:
            out[name]["weight"] = weights[name]
    logger.info(f"held-out positions ({len(examples)}): {out}")
    return {"positions": len(examples), **out}


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    (cfg,) = HfArgumentParser(RankSFTConfig).parse_args_into_dataclasses(argv)
    train(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())

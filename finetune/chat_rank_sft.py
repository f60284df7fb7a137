"""The conversation-aware reranker's LoRA adapter: the base model tuned to pick, among Muse's 20
candidates for a chat request, the film the person was recommended (LlamaRec's label ranking,
Yue et al. 2023, on the conversation-aware prompt; LoRA: Hu et al., ICLR 2022).

Each example is one Movie Dialog Dataset task-2 development request (Dodge et al. 2016: "I liked
A, B and C. Suggest a film") read and planned exactly as the chat does for a new user
(``chat_eval.chat_plan``), the prompt ``chat_eval.chat_rank_request`` builds from its words, the
facts of the films it says it liked and the candidates' facts (``rank_chat_user.jinja``), and the
label of the dataset's recommended film when it is among the 20 (a request whose film is not is
skipped: the ranker never sees such a case). The loss is ``rank_sft``'s: cross-entropy over
the 20 label logits of the last prompt token, optionally on top of the retrieval prior
(residual training).

The requests ``muse eval --stage chat --mdd`` scores (``chat_eval.mdd_sample`` at the same seed
and ``--eval_limit``) are never trained on: the eval's reranker rows are held out. Ready to paste
(from the repository root)::

    .venv/bin/python -m finetune.chat_rank_sft --data ../shared/data/ml-latest-small \\
        --mdd ../shared/data/mdd --output_dir .muse/train/chat-rank-v1
    .venv/bin/python -m agent.cli eval --stage chat --data ../shared/data/ml-latest-small \\
        --mdd ../shared/data/mdd --limit 1000 --rerank-adapter .muse/train/chat-rank-v1/adapter
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from agent.llm.engine import prompt_ids
from agent.pipeline.ranker import CANDIDATES, LABELS, rank_conversation
from finetune.base_config import LoRATrainConfig
from finetune.manifest import training_manifest
from finetune.rank_sft import (
    data_hash,
    fit_label_lora,
    fit_prior_scale,
    label_row,
    retrieval_prior,
)

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class ChatRankSFTConfig(LoRATrainConfig):
    data: Path = field(metadata={"help": "the MovieLens folder MDD's films map to (ml-latest-small)"})
    mdd: Path = field(metadata={"help": "the MDD development files and movie_kb.txt"})
    workdir: Path = field(
        default=Path(".muse/eval"),
        metadata={"help": "where the retriever's fit is cached (shared with `muse eval --stage chat`)"},
    )
    requests: int = field(
        default=0, metadata={"help": "MDD requests planned for examples (0: every one outside the eval sample)"}
    )
    eval_limit: int = field(
        default=1000, metadata={"help": "the eval's sample size (`muse eval --limit`): those requests stay unseen"}
    )
    epochs: float = field(default=2.0, metadata={"help": "passes over the examples"})
    retrieval_prior: bool = field(
        default=False,
        metadata={"help": "residual training on the retrieval prior (rank_sft's --retrieval_prior)"},
    )


@dataclass(frozen=True)
class ChatRankExample:
    request: str  # the person's words
    ids: list[str]  # the candidates' item ids, retrieval order
    liked: list[str]  # fact lines of the films the reader read as liked
    candidates: list[str]  # their fact lines as the prompt shows them
    scores: list[float]  # retrieval scores
    target: int  # position of the recommended film among the candidates


def plan_examples(setup, requests) -> list[ChatRankExample]:
    """An example per request whose recommended film is among the chat's 20 candidates.
    ``setup``: ``chat_eval.mdd_setup``'s; ``requests``: its ``MddRequest`` s."""
    from agent.evaluation.chat_eval import chat_plan, chat_rank_request

    out = []
    for n, r in enumerate(requests):
        target = set(setup.titles.ids(r.targets))
        plan, state = chat_plan(setup.agent, r.text)
        ids = [it.id for it in plan.items]
        hit = next((p for p, i in enumerate(ids) if i in target), None)
        if hit is not None and len(ids) == CANDIDATES:
            req = chat_rank_request(setup.agent, r.text, plan, state)
            facts = list(req.history), list(req.candidates)
            out.append(ChatRankExample(r.text, ids, *facts, list(req.retrieval_scores), hit))
        if n % 500 == 0:
            logger.info(f"planned {n} of {len(requests)} requests, {len(out)} examples")
    return out


def tokenize(example: ChatRankExample, tokenizer, label_ids: list[int], prior_scale: float | None) -> dict:
    """A training row: the prompt as serving sends it, and the answer's one label token."""
    messages = rank_conversation(example.liked, example.candidates, request=example.request)
    row = label_row(prompt_ids(tokenizer, messages), label_ids[example.target])
    if prior_scale is not None:
        row["prior"] = retrieval_prior(example.scores, prior_scale, len(label_ids))
    return row


def load_or_plan(cfg: ChatRankSFTConfig) -> tuple[list[ChatRankExample], dict]:
    """The examples (cached in ``output_dir/examples.jsonl``) and what they came from. Raises
    ``LeakError`` if a training request's words are those of an eval request."""
    from agent.evaluation.chat_eval import mdd_sample, mdd_setup
    from finetune.feedback_data import LeakError

    out = Path(cfg.output_dir)
    cache = out / "examples.jsonl"
    setup = mdd_setup(Path(cfg.data), Path(cfg.mdd), Path(cfg.workdir), cfg.seed)
    try:
        held_out = {r.text for r in mdd_sample(setup.requests, cfg.seed, cfg.eval_limit)}
        pool = [r for r in setup.requests if r.text not in held_out]
        if cfg.requests:
            pool = pool[: cfg.requests]
        if cache.exists():
            examples = [ChatRankExample(**json.loads(line)) for line in cache.read_text().splitlines() if line]
        else:
            examples = plan_examples(setup, pool)
            cache.write_text("".join(json.dumps(asdict(e)) + "\n" for e in examples))
    finally:
        setup.close()
    leaked = [e.request for e in examples if e.request in held_out]
    if leaked:
        raise LeakError(f"{len(leaked)} training requests are eval requests, e.g. {leaked[0]!r}")
    return examples, {"mdd_requests": len(setup.requests), "planned": len(pool), "eval_held_out": len(held_out)}


def train(cfg: ChatRankSFTConfig) -> Path:
    """Plan the examples (or reuse them), train, and save ``output_dir/adapter`` with its manifest
    (kind ``chat_ranker``). Resumes from the newest checkpoint. Raises ``ValueError`` when no
    request yields an example."""
    import random

    from datasets import Dataset
    from transformers import AutoTokenizer

    from agent.llm.engine import single_token_ids
    from agent.llm.model_files import ensure_checkpoint

    started = time.perf_counter()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    examples, provenance = load_or_plan(cfg)
    if not examples:
        raise ValueError("no MDD request has its recommended film among the chat's 20 candidates")
    random.Random(cfg.seed).shuffle(examples)
    logger.info(f"{len(examples)} examples from {provenance}")
    model_dir = Path(cfg.model_dir) if cfg.model_dir else ensure_checkpoint()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    label_ids = single_token_ids(tokenizer, LABELS)
    prior_scale = fit_prior_scale(examples) if cfg.retrieval_prior else None
    dataset = Dataset.from_list([tokenize(e, tokenizer, label_ids, prior_scale) for e in examples])
    trainer, result = fit_label_lora(cfg, model_dir, tokenizer, dataset, label_ids)
    adapter_dir = out / "adapter"
    trainer.model.save_pretrained(adapter_dir)
    manifest = training_manifest(
        "chat_ranker",
        cfg,
        model_dir,
        result,
        started,
        data=str(cfg.data),
        data_hash=data_hash(Path(cfg.data)),
        examples=len(examples),
        **provenance,
        lora_r=cfg.lora_r,
        retrieval_prior_scale=prior_scale,
        fusion_weight=0.0,  # serving's; `muse eval --stage chat --rerank-adapter` reports what validation picks
    )
    (adapter_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    logger.info(f"adapter saved in {adapter_dir}")
    return adapter_dir


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    (cfg,) = HfArgumentParser(ChatRankSFTConfig).parse_args_into_dataclasses(argv)
    train(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())

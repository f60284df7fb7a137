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

Few requests keep their film among the 20 (about 7%), so ``--depth N`` also makes an example of
a training request whose film is among the top N but not the top 20: the film and 19 others
drawn (seeded) from those N, kept in retrieval order (their own scores, so the prior still
holds). A fifth of the requests (by a hash of their words) are development requests, never
trained on and never deepened: the base model and the adapter score them, the fusion weight is
chosen there (``ranker.best_weight``) and kept only if its gain over retrieval order passes
``rerank_eval.kept_weight``'s rule; the manifest records it (``fusion_weight``).

The requests ``muse eval --stage chat --mdd`` scores (``chat_eval.mdd_sample`` at the same seed
and ``--eval_limit``) are never trained on: the eval's reranker rows are held out. Ready to paste
(from the repository root)::

    .venv/bin/python -m finetune.chat_rank_sft --data ../shared/data/ml-latest-small \\
        --mdd ../shared/data/mdd --output_dir .muse/train/chat-rank-v1
    .venv/bin/python -m agent.cli eval --stage chat --data ../shared/data/ml-latest-small \\
        --mdd ../shared/data/mdd --limit 1000 --rerank-adapter .muse/train/chat-rank-v1/adapter
"""

from __future__ import annotations

import hashlib
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
    depth: int = field(
        default=CANDIDATES,
        metadata={
            "help": "training requests whose film is among the top N (not the top 20) also make an example: "
            "the film and 19 others drawn from the N (20: no such examples)"
        },
    )
    dev_share: int = field(
        default=5, metadata={"help": "one request in N (by a hash of its words) is a development request"}
    )


@dataclass(frozen=True)
class ChatRankExample:
    request: str  # the person's words
    ids: list[str]  # the candidates' item ids, retrieval order
    liked: list[str]  # fact lines of the films the reader read as liked
    candidates: list[str]  # their fact lines as the prompt shows them
    scores: list[float]  # retrieval scores
    target: int  # position of the recommended film among the candidates
    deep: bool = False  # drawn from the top ``depth`` (training only), not the served 20


def is_dev(text: str, share: int) -> bool:
    """Whether a request is a development request: one in ``share`` by a hash of its words."""
    return int(hashlib.sha1(text.encode()).hexdigest(), 16) % share == 0


def plan_examples(setup, requests, depth: int = CANDIDATES, seed: int = 0) -> list[ChatRankExample]:
    """An example per request whose recommended film is among the chat's 20 candidates, and,
    with ``depth`` > 20, one per request whose film is among the top ``depth`` instead (the
    film and 19 others drawn from there, in retrieval order; ``deep``). ``setup``:
    ``chat_eval.mdd_setup``'s; ``requests``: its ``MddRequest`` s."""
    import random

    from agent.evaluation.chat_eval import chat_plan, chat_rank_request

    rng = random.Random(seed)
    out = []
    for n, r in enumerate(requests):
        target = set(setup.titles.ids(r.targets))
        plan, state = chat_plan(setup.agent, r.text)
        ids = [it.id for it in plan.items]
        hit = next((p for p, i in enumerate(ids) if i in target), None)
        items, scores, deep = plan.items, plan.scores, False
        if hit is None and depth > CANDIDATES:
            wide, _ = chat_plan(setup.agent, r.text, depth)
            at = next((p for p, it in enumerate(wide.items) if it.id in target), None)
            if at is not None and len(wide.items) >= CANDIDATES:
                keep = sorted([at, *rng.sample([p for p in range(len(wide.items)) if p != at], CANDIDATES - 1)])
                items, scores = [wide.items[p] for p in keep], [wide.scores[p] for p in keep]
                hit, ids, deep = keep.index(at), [it.id for it in items], True
        if hit is not None and len(ids) == CANDIDATES:
            req = chat_rank_request(setup.agent, r.text, items, scores, state)
            facts = list(req.history), list(req.candidates)
            out.append(ChatRankExample(r.text, ids, *facts, list(req.retrieval_scores), hit, deep))
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
            dev = [r for r in pool if is_dev(r.text, cfg.dev_share)]
            train = [r for r in pool if not is_dev(r.text, cfg.dev_share)]
            examples = plan_examples(setup, dev) + plan_examples(setup, train, cfg.depth, cfg.seed)
            cache.write_text("".join(json.dumps(asdict(e)) + "\n" for e in examples))
    finally:
        setup.close()
    leaked = [e.request for e in examples if e.request in held_out]
    if leaked:
        raise LeakError(f"{len(leaked)} training requests are eval requests, e.g. {leaked[0]!r}")
    deepened = [e.request for e in examples if e.deep and is_dev(e.request, cfg.dev_share)]
    if deepened:
        raise LeakError(f"{len(deepened)} development requests were deepened, e.g. {deepened[0]!r}")
    return examples, {"mdd_requests": len(setup.requests), "planned": len(pool), "eval_held_out": len(held_out)}


def rank_metrics(ranks: list[int]) -> dict:
    """N@10, R@10 and R@1 of 1-based ranks (each request's film is among its candidates)."""
    from retrieval.metrics import ndcg_at

    n = max(len(ranks), 1)
    return {
        "N@10": round(sum(ndcg_at(r, 10) for r in ranks) / n, 4),
        "R@10": round(sum(r <= 10 for r in ranks) / n, 4),
        "R@1": round(sum(r == 1 for r in ranks) / n, 4),
    }


def validate(cfg: ChatRankSFTConfig, model_dir: Path, adapter_dir: Path, dev: list[ChatRankExample]) -> dict:
    """The base model and the adapter on the development examples, each fused with retrieval at
    the weight ``ranker.best_weight`` picks there, kept or set to 0 by ``rerank_eval.kept_weight``:
    ``{"requests", "retrieval": metrics, "zero_shot"/"tuned": metrics + weight + evidence}``."""
    from agent.evaluation.rerank_eval import kept_weight
    from agent.llm.transformers_engine import TransformersEngine
    from agent.pipeline.ranker import WEIGHT_GRID, Ranker, RankRequest, best_weight, fuse, order
    from retrieval.metrics import ndcg_at

    base = [e.target + 1 for e in dev]  # retrieval order
    report: dict = {"requests": len(dev), "retrieval": rank_metrics(base)}
    if not dev:
        return report
    requests = [RankRequest(e.liked, e.candidates, e.scores, e.request) for e in dev]
    engine = TransformersEngine(model_dir, {"tuned": adapter_dir}, dtype=cfg.dtype)
    try:
        for name in (None, "tuned"):
            llm = Ranker(engine, name).llm_scores(requests)
            at = {w: [order(fuse(e.scores, s, w)).index(e.target) + 1 for e, s in zip(dev, llm)] for w in WEIGHT_GRID}
            best = best_weight(lambda w, at=at: sum(ndcg_at(r, 10) for r in at[w]))
            weight, evidence = kept_weight(
                best, [ndcg_at(r, 10) for r in base], [ndcg_at(r, 10) for r in at[best]], rows="requests"
            )
            report[name or "zero_shot"] = {**rank_metrics(at[best]), "weight": weight, "evidence": evidence}
    finally:
        engine.close()
    logger.info(f"development requests: {report}")
    return report


def train(cfg: ChatRankSFTConfig) -> Path:
    """Plan the examples (or reuse them), train on the training requests, choose the fusion
    weight on the development ones (``validate``), and save ``output_dir/adapter`` with its
    manifest (kind ``chat_ranker``, ``fusion_weight``). Resumes from the newest checkpoint.
    Raises ``ValueError`` when no training request yields an example."""
    import random

    from datasets import Dataset
    from transformers import AutoTokenizer

    from agent.llm.engine import single_token_ids
    from agent.llm.model_files import ensure_checkpoint

    started = time.perf_counter()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    examples, provenance = load_or_plan(cfg)
    dev = [e for e in examples if is_dev(e.request, cfg.dev_share)]
    examples = [e for e in examples if not is_dev(e.request, cfg.dev_share)]
    if not examples:
        raise ValueError("no MDD training request has its recommended film among the chat's candidates")
    random.Random(cfg.seed).shuffle(examples)
    deep = sum(e.deep for e in examples)
    logger.info(f"{len(examples)} training examples ({deep} from the top {cfg.depth}), {len(dev)} development")
    model_dir = Path(cfg.model_dir) if cfg.model_dir else ensure_checkpoint()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    label_ids = single_token_ids(tokenizer, LABELS)
    # The prior's scale from the examples as served (the top 20), applied to every example.
    prior_scale = fit_prior_scale([e for e in examples if not e.deep] or examples) if cfg.retrieval_prior else None
    dataset = Dataset.from_list([tokenize(e, tokenizer, label_ids, prior_scale) for e in examples])
    trainer, result = fit_label_lora(cfg, model_dir, tokenizer, dataset, label_ids)
    adapter_dir = out / "adapter"
    trainer.model.save_pretrained(adapter_dir)
    development = validate(cfg, model_dir, adapter_dir, dev)
    manifest = training_manifest(
        "chat_ranker",
        cfg,
        model_dir,
        result,
        started,
        data=str(cfg.data),
        data_hash=data_hash(Path(cfg.data)),
        examples=len(examples),
        deep_examples=deep,
        **provenance,
        lora_r=cfg.lora_r,
        retrieval_prior_scale=prior_scale,
        development=development,
        # What serving would use: validated on the development requests (0: retrieval order).
        fusion_weight=development.get("tuned", {}).get("weight", 0.0),
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

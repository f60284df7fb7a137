"""`muse eval --stage rerank`: retrieval through Chroma, then the LLM ranker over the top 20.

Rows compared on the same candidates (LlamaRec's "valid retrieval subset" = users whose held-out
item is among the 20 candidates; every other user scores 0 in every row, so the LLM is only
asked about the subset, which changes no metric):

- ``retrieval``: retrieval order;
- ``zero_shot``: the base model's label distribution alone;
- ``tuned``: the ranker adapter's distribution alone (when an adapter is registered);
- ``fused``: ``(1 - w) z(retrieval) + w z(llm)``, ``w`` validated on the validation split:
  the best weight on the grid, kept only if its paired gain in N@10 over retrieval order is at
  least ``Z_GAIN`` standard errors (else 0, retrieval order: a gain inside the noise is not
  served). ``--record-weight`` writes it into the adapter's manifest, where serving reads it.

For the test split, ``w`` is chosen on validation first, then the retriever is refitted on
train + validation exactly as in the retrieval stage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from agent.evaluation.report import paired_gain
from agent.evaluation.retrieval_eval import UserCandidates, fit_for_validation, refit_for_test, retrieve_all
from agent.llm.engine import Engine
from agent.pipeline.ranker import PromptConfig, Ranker, RankRequest, best_weight, fuse, order
from retrieval.metrics import ndcg_at, summarize
from retrieval.split import Split

logger = logging.getLogger(__name__)

Z_GAIN = 1.645  # one-sided 95%: the rule `muse finetune promote` applies to a new adapter


def ranks_after(users: Sequence[UserCandidates], orders: dict[int, list[int]]) -> list[int | None]:
    """Rank of each user's target after reordering its candidates (None outside them)."""
    out = []
    for n, u in enumerate(users):
        position = u.rank
        out.append(None if position is None else orders[n].index(position - 1) + 1)
    return out


def llm_rows(
    engine: Engine, prompt: PromptConfig, users: Sequence[UserCandidates], items, adapter: str | None
) -> dict[int, np.ndarray]:
    """One model's label log-distribution per valid user (``adapter=None``: the base model)."""
    valid = [n for n, u in enumerate(users) if u.rank is not None]
    requests = [
        RankRequest.of(
            users[n].history,
            [c.item_id for c in users[n].candidates],
            [c.score for c in users[n].candidates],
            items,
            prompt,
        )
        for n in valid
    ]
    return dict(zip(valid, Ranker(engine, adapter, prompt=prompt).llm_scores(requests)))


def score_split(
    engine: Engine, prompt: PromptConfig, users: Sequence[UserCandidates], items, adapter: str | None
) -> dict:
    """LLM scores (label log-distributions) per valid user: the base model, and the adapter."""
    runs = {"zero_shot": None} | ({"tuned": adapter} if adapter else {})  # row name -> adapter
    return {row: llm_rows(engine, prompt, users, items, use) for row, use in runs.items()}


def fused_orders(users, llm: dict[int, np.ndarray], weight: float) -> dict[int, list[int]]:
    return {n: order(fuse([c.score for c in users[n].candidates], s, weight)) for n, s in llm.items()}


def choose_weight(users, llm: dict[int, np.ndarray]) -> float:
    """The fusion weight with the best N@10 (``ranker.best_weight``: ties to the smaller weight)."""

    def n_at_10(w: float) -> float:
        ranks = ranks_after(users, fused_orders(users, llm, w))
        return round(float(np.mean([ndcg_at(r, 10) for r in ranks if r is not None] or [0.0])), 12)

    return best_weight(n_at_10)


def kept_weight(best: float, base: Sequence[float], fused: Sequence[float], rows: str = "users") -> tuple[float, dict]:
    """The one rule that decides whether a fusion weight is served: ``best`` (the weight the
    search chose) is kept if the paired per-row N@10 gain of its order (``fused``) over
    retrieval order (``base``), on the same rows, has a mean of at least ``Z_GAIN`` standard
    errors; else 0.0 (retrieval order). Returns ``(weight, evidence)``; ``rows`` names what a
    row is in the evidence (users, requests)."""
    mean, se = paired_gain(list(base), list(fused))
    kept = best > 0 and mean > 0 and mean >= Z_GAIN * se
    evidence = {
        "best_weight": best,
        rows: len(base),
        "gain_mean": round(mean, 5),
        "gain_se": round(se, 5),
        "rule": f"best weight kept if gain >= {Z_GAIN} standard errors, else 0",
    }
    return (best if kept else 0.0), evidence


def validated_weight(users, llm: dict[int, np.ndarray]) -> tuple[float, dict]:
    """The fusion weight to serve, and the evidence: ``choose_weight``'s best weight, kept by
    ``kept_weight`` on the users with their item among the candidates."""
    best = choose_weight(users, llm)
    valid = list(llm)
    base = ranks_after(users, {n: list(range(len(users[n].candidates))) for n in valid})
    fused = ranks_after(users, fused_orders(users, llm, best))
    return kept_weight(best, [ndcg_at(base[n], 10) for n in valid], [ndcg_at(fused[n], 10) for n in valid])


def record_weight(adapter_dir: Path, weight: float, evidence: dict) -> None:
    """Write the validated fusion weight into the adapter's manifest (atomically)."""
    import json

    file = Path(adapter_dir) / "manifest.json"
    manifest = json.loads(file.read_text()) if file.exists() else {}
    manifest["fusion_weight"] = weight
    manifest["fusion_weight_validation"] = evidence
    write_json(file, manifest, indent=2)


def split_report(users: Sequence[UserCandidates], scores: dict, weight: float) -> dict:
    llm = scores["tuned"] if "tuned" in scores else scores["zero_shot"]
    valid = list(llm)
    orders = {
        "retrieval": {n: list(range(len(users[n].candidates))) for n in valid},
        **{name: {n: order(s) for n, s in rows.items()} for name, rows in scores.items()},
        "fused": fused_orders(users, llm, weight),
    }
    rows = {}
    for name, o in orders.items():
        ranks = ranks_after(users, o)
        rows[name] = {"all_users": summarize(ranks), "valid_subset": summarize([ranks[n] for n in valid])}
    return {"metrics": rows["fused"]["all_users"], "rows": rows, "valid_users": len(valid)}


def write_json(path: Path, data, indent: int = 1) -> None:
    """Written under a temporary name, then renamed: never a half file."""
    import json

    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=indent))
    tmp.replace(path)


def protocol_candidates(data: Path, workdir: Path, seed: int = 0) -> dict[str, list[UserCandidates]]:
    """The protocol's validation and test users with their 20 Chroma candidates (the retriever
    fitted as in ``muse eval``), cached in ``workdir/eval-candidates.json``: adapters compared
    later (rounds of the loop, a promotion) see exactly the same candidates."""
    import json
    from dataclasses import asdict

    from retrieval.retriever import Candidate

    file = Path(workdir) / "eval-candidates.json"
    if not file.exists():
        fitted = fit_for_validation(data, Path(workdir) / "eval", seed)
        out = {"validation": retrieve_all(fitted.retriever(), fitted.proto, "validation")}
        refit_for_test(fitted, seed)
        out["test"] = retrieve_all(fitted.retriever(), fitted.proto, "test")
        write_json(file, {split: [asdict(u) for u in users] for split, users in out.items()})
    raw = json.loads(file.read_text())
    return {
        split: [
            UserCandidates(u["user"], u["history"], u["target"], [Candidate(**c) for c in u["candidates"]])
            for u in users
        ]
        for split, users in raw.items()
    }


def run_rerank_eval(
    data: Path,
    workdir: Path,
    engine: Engine,
    adapter: str | None,
    split: Split = "test",
    seed: int = 0,
    chroma_url: str | None = None,
    prompt: PromptConfig | None = None,
) -> dict:
    started = time.perf_counter()
    fitted = fit_for_validation(data, workdir, seed, chroma_url=chroma_url)
    proto = fitted.proto
    items = {item.id: item for item in proto.items}
    prompt = prompt or PromptConfig()

    val_users = retrieve_all(fitted.retriever(), proto, "validation")
    logger.info(f"ranking validation candidates with {adapter or 'the base model'}")
    val_scores = score_split(engine, prompt, val_users, items, adapter)
    weight, evidence = validated_weight(val_users, val_scores.get("tuned", val_scores["zero_shot"]))
    evidence |= {"data": str(data), "seed": seed, "retrieval_users": len(val_users)}
    logger.info(
        f"fusion weight validated: {weight} (best {evidence['best_weight']}, gain {evidence['gain_mean']:+.4f} "
        f"± {evidence['gain_se']:.4f})"
    )
    report = {"validation": split_report(val_users, val_scores, weight)}
    if split == "test":
        refit_for_test(fitted, seed)
        test_users = retrieve_all(fitted.retriever(), proto, "test")
        logger.info("ranking test candidates")
        report["test"] = split_report(test_users, score_split(engine, prompt, test_users, items, adapter), weight)
    return {
        "stage": "rerank",
        "split": split,
        "seed": seed,
        "users": len(proto.loo.users),
        "items": len(proto.items),
        "interactions": proto.n_interactions,
        "metrics": report[split]["metrics"],
        "adapter": adapter,
        "fusion_weight": weight,
        "fusion_weight_validation": evidence,
        "splits": report,
        "seconds": round(time.perf_counter() - started, 1),
    }

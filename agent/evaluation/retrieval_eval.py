"""`muse eval`: the LlamaRec protocol (design.md) on a dataset folder, through Chroma.

Steps: load -> 5-core filter -> chronological leave-one-out -> fit on the training parts
(SASRec's epoch and the fusion weights chosen on the validation item) -> index the items in
Chroma -> retrieve top-20 for every user through ``Retriever`` (the service's path) -> metrics.
For the test split the models are refitted on train + validation (everything before the test
item) with the epoch count and fusion weights validation chose, and the query history
includes the validation item. Baselines (popularity,
item-kNN) are fitted on the same data and scored by the same metric functions.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from agent.catalog import Item, load_dataset
from agent.evaluation.breakdown import (
    POPULARITY_SHARES,
    history_bucket,
    history_labels,
    ndcg_by_group,
    popularity_tiers,
)
from agent.indexing import embed_catalog
from agent.pipeline.ranker import CANDIDATES
from retrieval import baselines
from retrieval.beyond_accuracy import summarize_lists
from retrieval.exact import rank_among_unseen, top_k_unseen
from retrieval.hybrid import HybridConfig, HybridModel, fit_hybrid
from retrieval.index import ItemIndex, chroma_client
from retrieval.metrics import rank_of, summarize
from retrieval.retriever import Candidate, Retriever
from retrieval.split import LeaveOneOut, Split, k_core

logger = logging.getLogger(__name__)


@dataclass
class Protocol:
    """The filtered data and its split, plus integer indices for the exact baselines."""

    items: list[Item]
    loo: LeaveOneOut
    n_interactions: int
    source: Path  # the dataset folder

    @property
    def item_index(self) -> dict[str, int]:
        return {item.id: n for n, item in enumerate(self.items)}


def prepare(data: Path) -> Protocol:
    dataset = load_dataset(data)
    events = k_core([(e.user_id, e.item_id, e.timestamp) for e in dataset.interactions], k=5)
    loo = LeaveOneOut.from_events(events)
    kept = set(loo.items)
    items = [item for item in dataset.items if item.id in kept]
    return Protocol(items, loo, len(events), Path(data))


def model_history(proto: Protocol, split: Split) -> list[list[str]]:
    """Sequences the models may be fitted on before predicting ``split``'s targets."""
    if split == "validation":
        return list(proto.loo.train().values())
    return [seq[:-1] for seq in proto.loo.sequences.values()]


@dataclass
class Run:
    """One model's result on a split: each user's rank of the held-out item and top-10 list."""

    ranks: list[int | None]
    lists: list[list[str]]


def baseline_runs(proto: Protocol, split: Split) -> dict[str, Run]:
    """Popularity and item-kNN over every item (exact, seen items excluded), users in
    ``proto.loo.users`` order."""
    index = proto.item_index
    ids = [item.id for item in proto.items]
    fit_on = [[index[i] for i in seq] for seq in model_history(proto, split)]
    n = len(proto.items)
    pop = baselines.popularity_scores(fit_on, n)
    sim = baselines.item_knn_similarity(fit_on, n)
    runs = {"popularity": Run([], []), "item_knn": Run([], [])}
    for user in proto.loo.users:
        history, target = proto.loo.history_and_target(user, split)
        hist = [index[i] for i in history]
        for name, scores in (("popularity", pop), ("item_knn", baselines.item_knn_scores(sim, hist))):
            runs[name].ranks.append(rank_among_unseen(scores, hist, index[target]))
            runs[name].lists.append([ids[i] for i in top_k_unseen(scores, hist, 10)])
    return runs


def beyond_and_buckets(proto: Protocol, split: Split, runs: dict[str, Run]) -> tuple[dict, dict]:
    """Beyond-accuracy measures of each run's top-10 lists (``retrieval.beyond_accuracy``) and
    N@10 per history-length and held-out-item-popularity bucket (``evaluation.breakdown``)."""
    fitted_on = model_history(proto, split)
    counts = Counter(i for seq in fitted_on for i in set(seq))
    categories = {item.id: item.categories for item in proto.items}
    pairs = [proto.loo.history_and_target(u, split) for u in proto.loo.users]
    histories = [list(h) for h, _ in pairs]
    beyond = {
        name: summarize_lists(run.lists, histories, categories, counts, len(fitted_on), len(proto.items))
        for name, run in runs.items()
    }
    tiers = popularity_tiers(counts, [item.id for item in proto.items])
    ranks = {name: run.ranks for name, run in runs.items()}
    buckets = {
        "history_length": ndcg_by_group([history_bucket(len(h)) for h in histories], ranks, history_labels()),
        "item_popularity": ndcg_by_group(
            [tiers[t] for _, t in pairs], ranks, [label for label, _ in POPULARITY_SHARES]
        ),
    }
    return beyond, buckets


@dataclass
class Fitted:
    """Everything fitted for one evaluation run: the protocol data, the Chroma index and the
    hybrid model (fitted on train, epoch and weights chosen on the validation item)."""

    proto: Protocol
    index: ItemIndex
    model: HybridModel

    def retriever(self) -> Retriever:
        retriever = Retriever(self.index, self.model, popular=[])
        retriever.write_hybrid(self.proto.items)
        return retriever


@dataclass
class UserCandidates:
    user: str
    history: list[str]
    target: str
    candidates: list[Candidate]

    @property
    def rank(self) -> int | None:
        return rank_of(self.target, [c.item_id for c in self.candidates])


def fit_for_validation(
    data: Path,
    workdir: Path,
    seed: int = 0,
    config: HybridConfig | None = None,
    chroma_url: str | None = None,
) -> Fitted:
    proto = prepare(data)
    logger.info(f"{len(proto.loo.users)} users, {len(proto.items)} items, {proto.n_interactions} interactions")

    index, content = content_index(proto, workdir, chroma_url)
    ids = [item.id for item in proto.items]
    model = fit_hybrid(ids, content, list(model_history(proto, "test")), seed, config, progress=logger.info)
    logger.info(f"fusion weights chosen on validation: {model.weights}")
    return Fitted(proto, index, model)


def content_index(proto: Protocol, workdir: Path, chroma_url: str | None = None) -> tuple[ItemIndex, np.ndarray]:
    """The Chroma content collection of the protocol's items (embedding only what changed)
    and their content vectors, in item order."""
    from retrieval.embeddings import MiniLMEmbedding

    # A store per dataset, so re-runs only embed what changed (upserts are incremental).
    tag = hashlib.sha1(str(Path(proto.source).resolve()).encode()).hexdigest()[:10]
    index = ItemIndex(chroma_client(workdir / f"chroma-{tag}", chroma_url), MiniLMEmbedding())
    embedded = embed_catalog(index, proto.items)
    logger.info(f"content index: {embedded} items embedded, {len(proto.items) - embedded} unchanged")
    return index, index.content_vectors([item.id for item in proto.items])


def refit_for_test(fitted: Fitted, seed: int = 0) -> None:
    logger.info("refitting on train + validation with the epochs and weights validation chose")
    fitted.model.refit(model_history(fitted.proto, "test"), seed=seed, progress=logger.info)


def retrieve_all(retriever: Retriever, proto: Protocol, split: Split, k: int = CANDIDATES) -> list[UserCandidates]:
    out = []
    for user in tqdm(proto.loo.users, desc=f"retrieve ({split})", unit="user", leave=False):
        history, target = proto.loo.history_and_target(user, split)
        out.append(UserCandidates(user, list(history), target, retriever.retrieve(history, k=k)))
    return out


def run_retrieval_eval(
    data: Path,
    workdir: Path,
    split: Split = "test",
    seed: int = 0,
    config: HybridConfig | None = None,
    chroma_url: str | None = None,
) -> dict:
    started = time.perf_counter()
    fitted = fit_for_validation(data, workdir, seed, config, chroma_url)
    if split == "test":
        refit_for_test(fitted, seed)
    proto, model = fitted.proto, fitted.model
    found = retrieve_all(fitted.retriever(), proto, split)
    runs = {"muse": Run([u.rank for u in found], [[c.item_id for c in u.candidates[:10]] for u in found])}
    runs.update(baseline_runs(proto, split))
    beyond, buckets = beyond_and_buckets(proto, split, runs)
    return {
        "stage": "retrieval",
        "split": split,
        "seed": seed,
        "users": len(proto.loo.users),
        "items": len(proto.items),
        "interactions": proto.n_interactions,
        "metrics": summarize(runs["muse"].ranks),
        "baselines": {name: summarize(run.ranks) for name, run in runs.items() if name != "muse"},
        "beyond_accuracy": beyond,
        "buckets": buckets,
        "fusion_weights": model.weights,
        "sasrec_best_epoch": model.sasrec.best_epoch if model.sasrec else None,
        "seconds": round(time.perf_counter() - started, 1),
    }

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
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from agent.catalog import Item, load_dataset
from agent.indexing import embed_catalog
from retrieval import baselines
from retrieval.behavior import BehaviorConfig, HybridModel
from retrieval.index import ItemIndex, chroma_client
from retrieval.metrics import rank_of, summarize
from retrieval.retriever import Retriever
from retrieval.split import LeaveOneOut, Split, k_core

RETRIEVE_K = 20


@dataclass
class Protocol:
    """The filtered data and its split, plus integer indices for the exact baselines."""

    items: list[Item]
    loo: LeaveOneOut
    n_interactions: int

    @property
    def item_index(self) -> dict[str, int]:
        return {item.id: n for n, item in enumerate(self.items)}


def prepare(data: Path) -> Protocol:
    dataset = load_dataset(data)
    events = k_core([(e.user_id, e.item_id, e.timestamp) for e in dataset.interactions], k=5)
    loo = LeaveOneOut.from_events(events)
    kept = set(loo.items)
    items = [item for item in dataset.items if item.id in kept]
    return Protocol(items, loo, len(events))


def model_history(proto: Protocol, split: Split) -> list[list[str]]:
    """Sequences the models may be fitted on before predicting ``split``'s targets."""
    if split == "validation":
        return list(proto.loo.train().values())
    return [seq[:-1] for seq in proto.loo.sequences.values()]


def baseline_metrics(proto: Protocol, split: Split) -> dict[str, dict[str, float]]:
    index = proto.item_index
    fit_on = [[index[i] for i in seq] for seq in model_history(proto, split)]
    n = len(proto.items)
    pop = baselines.popularity_scores(fit_on, n)
    sim = baselines.item_knn_similarity(fit_on, n)
    ranks: dict[str, list[int]] = {"popularity": [], "item_knn": []}
    for user in proto.loo.users:
        history, target = proto.loo.history_and_target(user, split)
        hist = [index[i] for i in history]
        ranks["popularity"].append(baselines.rank_of_target(pop, hist, index[target]))
        knn = baselines.item_knn_scores(sim, hist)
        ranks["item_knn"].append(baselines.rank_of_target(knn, hist, index[target]))
    return {name: summarize(r) for name, r in ranks.items()}


def run_retrieval_eval(
    data: Path,
    workdir: Path,
    split: Split = "test",
    seed: int = 0,
    config: BehaviorConfig | None = None,
    chroma_url: str | None = None,
    say: Callable[[str], None] = print,
) -> dict:
    started = time.perf_counter()
    np.random.seed(seed)
    proto = prepare(data)
    say(f"{len(proto.loo.users)} users, {len(proto.items)} items, {proto.n_interactions} interactions")

    from retrieval.embeddings import MiniLMEmbedding

    # A store per dataset, so re-runs only embed what changed (upserts are incremental).
    tag = hashlib.sha1(str(Path(data).resolve()).encode()).hexdigest()[:10]
    client = chroma_client(workdir / f"chroma-{tag}", chroma_url)
    index = ItemIndex(client, MiniLMEmbedding())
    embedded = embed_catalog(index, proto.items)
    say(f"content index: {embedded} items embedded, {len(proto.items) - embedded} unchanged")
    ids = [item.id for item in proto.items]
    content = index.content_vectors(ids)

    users = proto.loo.users
    val = [proto.loo.history_and_target(u, "validation") for u in users]
    model = HybridModel(ids, config or BehaviorConfig()).fit(
        model_history(proto, "validation"), content,
        validation=([h for h, _ in val], [t for _, t in val]), seed=seed, progress=say,
    )  # fmt: skip
    say(f"fusion weights chosen on validation: {model.weights}")
    if split == "test":
        say("refitting on train + validation with the epochs and weights validation chose")
        model.refit(model_history(proto, "test"), seed=seed, progress=say)

    retriever = Retriever(index, model, popular=[])
    retriever.write_hybrid(proto.items)
    ranks = []
    for user in tqdm(users, desc=f"retrieve ({split})", unit="user", leave=False):
        history, target = proto.loo.history_and_target(user, split)
        candidates = retriever.retrieve(history, k=RETRIEVE_K)
        ranks.append(rank_of(target, [c.item_id for c in candidates]))

    return {
        "stage": "retrieval",
        "split": split,
        "seed": seed,
        "users": len(users),
        "items": len(proto.items),
        "interactions": proto.n_interactions,
        "metrics": summarize(ranks),
        "baselines": baseline_metrics(proto, split),
        "fusion_weights": model.weights,
        "sasrec_best_epoch": model.sasrec.best_epoch if model.sasrec else None,
        "seconds": round(time.perf_counter() - started, 1),
    }

"""Build and load the service's retrieval state from the event store.

``build_index`` fits the hybrid model on what the store holds (each user's last item held out
to pick SASRec's epoch and the fusion weights), refits it on everything with those choices,
saves it under the data folder, and upserts every catalog item into Chroma.
``load_retriever`` opens that state again for serving.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tqdm import tqdm

from agent.catalog import Item, in_history
from agent.config import Settings
from agent.store import EventStore
from agent.store.history import user_sequences
from retrieval.hybrid import MIN_SEQUENCE, HybridConfig, HybridModel, fit_hybrid
from retrieval.index import ItemIndex, chroma_client
from retrieval.retriever import Retriever, recent_popularity

logger = logging.getLogger(__name__)

MIN_USERS_TO_FIT = 5


def embed_catalog(index: ItemIndex, items: list[Item]) -> int:
    """Embed new and changed items into the content collection, with a progress bar."""
    with tqdm(total=len(items), desc="embed items", unit="item", leave=False) as bar:
        return index.sync_content(items, progress=bar.update)


def open_index(settings: Settings) -> ItemIndex:
    from retrieval.embeddings import MiniLMEmbedding

    return ItemIndex(chroma_client(settings.chroma_path, settings.chroma_url), MiniLMEmbedding())


def build_index(
    store: EventStore,
    settings: Settings,
    config: HybridConfig | None = None,
) -> dict:
    items = store.items()
    if not items:
        raise ValueError("the catalog is empty: run `muse ingest PATH` first")
    index = open_index(settings)
    embedded = embed_catalog(index, items)
    events = store.events()
    sequences = user_sequences(events)
    usable = [s for s in sequences.values() if len(s) >= MIN_SEQUENCE]
    model = None
    if len(usable) >= MIN_USERS_TO_FIT:
        ids = [it.id for it in items]
        model = fit_hybrid(ids, index.content_vectors(ids), usable, settings.seed, config, progress=logger.info)
        model.refit(list(sequences.values()), seed=settings.seed, progress=logger.info)
        model.save(settings.model_dir)
    else:
        logger.info(
            f"only {len(usable)} users with {MIN_SEQUENCE}+ items (need {MIN_USERS_TO_FIT}): "
            "serving content and popularity only"
        )
    # popularity counts what the history counts (catalog.in_history), as onboarding's tiers do
    popular = recent_popularity([(e.item_id, e.timestamp) for e in events if in_history(e)])
    settings.model_dir.mkdir(parents=True, exist_ok=True)
    (settings.model_dir / "popular.json").write_text(json.dumps(popular))
    Retriever(index, model, popular).write_hybrid(items)
    return {
        "items": len(items),
        "embedded": embedded,
        "users": len(sequences),
        "fitted": model is not None,
        "weights": model.weights if model else None,
    }


def load_retriever(settings: Settings) -> Retriever:
    folder: Path = settings.model_dir
    model = HybridModel.load(folder) if (folder / "model.json").exists() else None
    popular_file = folder / "popular.json"
    popular = json.loads(popular_file.read_text()) if popular_file.exists() else []
    return Retriever(open_index(settings), model, popular)

"""Retrieval through a real Chroma store, local and server: the service's path end to end.

One test body runs against each backend (an in-process PersistentClient and a `chroma run`
server reached with HttpClient), on the shipped demo catalog.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from agent.catalog import Interaction, Item, load_interactions, load_items, turned_down
from agent.config import Settings
from agent.indexing import build_index, load_retriever
from agent.store import SQLiteStore
from agent.store.history import history_of
from retrieval.hybrid import HybridConfig
from retrieval.index import Filters
from retrieval.retriever import away_from
from tests.conftest import DEMO

NEW_ITEM = Item(
    "fresh-1",
    "Abyssal Lanterns",
    "A documentary about bioluminescent creatures and hydrothermal vents in the deep ocean trenches.",
    ("Documentary",),
    2026,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    chroma = Path(sys.executable).with_name("chroma")
    port = _free_port()
    folder = tmp_path_factory.mktemp("chroma-server")
    proc = subprocess.Popen(
        [str(chroma), "run", "--path", str(folder), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    import urllib.request

    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1)
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("chroma server did not start")
            time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module", params=["local", "server"])
def demo(request, tmp_path_factory):
    """(settings, store, retriever) over the demo catalog, indexed in the chosen backend."""
    folder = tmp_path_factory.mktemp(f"demo-{request.param}")
    url = request.getfixturevalue("chroma_server") if request.param == "server" else None
    settings = Settings(data_dir=folder, chroma_url=url)
    store = SQLiteStore(settings.db_path)
    store.upsert_items(load_items(DEMO / "demo_items.jsonl"))
    store.add_events(load_interactions(DEMO / "demo_interactions.jsonl"))
    report = build_index(store, settings)
    assert report["fitted"] and report["embedded"] == 200
    return settings, store, load_retriever(settings)


def demo_users(store):
    return sorted({e.user_id for e in store.events()})


def test_seen_and_turned_down_items_never_come_back(demo):
    _, store, retriever = demo
    checked_low = 0
    for user in demo_users(store):
        history = history_of(store, user)
        disliked = turned_down(store.history(user))
        got = [c.item_id for c in retriever.retrieve(history, k=50, disliked=disliked)]
        assert len(got) == 50 and len(set(got)) == 50
        assert not set(got) & set(history)
        # Items the user disliked or rated low are not history, and must not be shown either.
        assert not set(got) & set(disliked)
        assert all(c.source == "hybrid" for c in retriever.retrieve(history, k=5, disliked=disliked))
        checked_low += len(disliked)
    assert checked_low >= 20  # the demo users rated some items 2 or less


def test_a_disliked_item_pushes_retrieval_away_from_items_like_it(demo):
    _, store, retriever = demo
    history = history_of(store, demo_users(store)[0])
    before = retriever.retrieve(history, k=20)
    top = before[0].item_id
    after = {c.item_id: c.score for c in retriever.retrieve(history, k=40, disliked=[top])}
    assert top not in after
    # The items the first list ranked right after the disliked one lose score.
    assert all(after.get(c.item_id, -1e9) < c.score for c in before[1:6])


def test_away_from_by_hand():
    q = np.array([1.0, 0.0], np.float32)
    moved = away_from(q, np.array([[2.0, 0.0], [0.0, 3.0]], np.float32), weight=0.5)
    # mean of the unit vectors (1, 0) and (0, 1) = (0.5, 0.5); |q| = 1; q - 0.5 * (0.5, 0.5)
    assert np.allclose(moved, [0.75, -0.25])
    assert away_from(q, np.zeros((0, 0), np.float32)) is q


def test_scores_are_in_descending_order(demo):
    _, store, retriever = demo
    history = history_of(store, demo_users(store)[0])
    scores = [c.score for c in retriever.retrieve(history, k=30)]
    assert scores == sorted(scores, reverse=True)


def test_metadata_filters(demo):
    _, store, retriever = demo
    history = history_of(store, demo_users(store)[3])
    items = {i.id: i for i in store.items()}
    horror = retriever.retrieve(history, k=10, filters=Filters(categories=["Horror"]))
    assert horror and all("Horror" in items[c.item_id].categories for c in horror)
    either = retriever.retrieve(history, k=10, filters=Filters(categories=["Western", "War"]))
    assert either and all({"Western", "War"} & set(items[c.item_id].categories) for c in either)
    assert {"Western", "War"} <= {cat for c in either for cat in items[c.item_id].categories}  # an or, both found
    nineties = retriever.retrieve(history, k=10, filters=Filters(year_min=1990, year_max=1999))
    assert nineties and all(1990 <= items[c.item_id].year <= 1999 for c in nineties)
    first = retriever.retrieve(history, k=5)
    excluded = retriever.retrieve(history, k=5, filters=Filters(exclude_ids=[first[0].item_id]))
    assert first[0].item_id not in {c.item_id for c in excluded}


def test_an_allow_list_bounds_every_path(demo):
    """``Filters.only_ids`` (the films of a person a request names): the hybrid and content
    searches and the popular list return only those, with the other filters still applied."""
    _, store, retriever = demo
    history = history_of(store, demo_users(store)[3])
    items = {i.id: i for i in store.items()}
    far = [c.item_id for c in retriever.retrieve(history, k=200)][-6:]  # none of them in the top 10
    only = Filters(only_ids=far)
    assert sorted(c.item_id for c in retriever.retrieve(history, k=10, filters=only)) == sorted(far)
    assert {c.item_id for c in retriever.retrieve([], k=10, filters=only)} == set(far)  # popular, then catalog
    assert {c.item_id for c in retriever.retrieve([], k=10, filters=only, query="a heist")} == set(far)
    year = items[far[0]].year
    dated = retriever.retrieve(history, k=10, filters=Filters(year_min=year, year_max=year, only_ids=far))
    assert dated and {c.item_id for c in dated} <= {i for i in far if items[i].year == year}
    assert retriever.retrieve(history, k=10, filters=Filters(only_ids=[])) == []
    assert retriever.retrieve([], k=10, filters=Filters(only_ids=[])) == []


def test_bad_year_range_is_refused():
    with pytest.raises(ValueError, match="year_min 2000 is after year_max 1990"):
        Filters(year_min=2000, year_max=1990)


def test_cold_start_user_gets_popular_items(demo):
    _, store, retriever = demo
    got = retriever.retrieve([], k=10)
    assert [c.source for c in got] == ["popular"] * 10
    assert [c.item_id for c in got] == retriever.popular[:10]
    counts = {}
    for e in store.events():
        counts[e.item_id] = counts.get(e.item_id, 0) + 1
    # Popular items are ones many users touched, never the never-touched ones.
    assert all(counts.get(c.item_id, 0) >= 2 for c in got)
    filtered = retriever.retrieve([], k=5, filters=Filters(categories=["Western"]))
    assert filtered and all("Western" in i.categories for i in store.get_items([c.item_id for c in filtered]))


def test_cold_start_user_with_text_query_uses_content(demo):
    _, store, retriever = demo
    got = retriever.retrieve([], k=5, query="a haunted house full of ghosts, terrifying horror")
    items = {i.id: i for i in store.get_items([c.item_id for c in got])}
    assert [c.source for c in got] == ["content"] * 5
    # 16 of the 200 demo items are Horror (8%); text search must do far better than chance.
    horror = sum("Horror" in items[c.item_id].categories for c in got)
    assert horror >= 3, [items[c.item_id].title for c in got]


def test_new_item_is_reachable_through_its_content(demo):
    _settings, store, retriever = demo
    store.upsert_items([NEW_ITEM])
    assert retriever.upsert_items([NEW_ITEM]) == 1
    assert retriever.upsert_items([NEW_ITEM]) == 0  # incremental: unchanged text is not re-embedded
    query = "deep sea documentary about glowing ocean creatures"
    assert retriever.retrieve([], k=1, query=query)[0].item_id == "fresh-1"
    # A user with history and the same text query reaches it through the hybrid collection.
    history = history_of(store, demo_users(store)[0])
    hybrid = retriever.retrieve(history, k=3, query=query, query_weight=3.0)
    assert hybrid[0].source == "hybrid" and "fresh-1" in [c.item_id for c in hybrid]


def test_a_new_item_in_a_new_category_is_served_on_every_path(demo):
    _, store, retriever = demo
    item = Item(
        "fresh-2",
        "Bayou Arias",
        "An opera sung to a zydeco accordion in a Louisiana dance hall.",
        ("Zydeco Opera",),
        2026,
    )
    store.upsert_items([item])
    retriever.upsert_items([item])
    only = Filters(categories=["Zydeco Opera"])
    history = history_of(store, demo_users(store)[0])
    with_history = retriever.retrieve(history, k=5, filters=only)
    with_query = retriever.retrieve([], k=5, filters=only, query="accordion opera")
    cold = retriever.retrieve([], k=5, filters=only)  # no history, no query: popular, then the catalog
    assert [[c.item_id for c in got] for got in (with_history, with_query, cold)] == [["fresh-2"]] * 3
    assert cold[0].source == "catalog"
    nothing = Filters(categories=["No Such Category"])
    assert retriever.retrieve(history, k=5, filters=nothing) == retriever.retrieve([], k=5, filters=nothing) == []


def test_reindexing_with_a_model_of_another_width_rebuilds_the_hybrid_collection(demo):
    settings, store, _ = demo
    narrow = build_index(store, settings, HybridConfig(transition=False))
    assert "transition" not in narrow["weights"]
    retriever = load_retriever(settings)
    width = retriever.model.item_vectors().shape[1]
    history = history_of(store, demo_users(store)[0])
    assert len(retriever.retrieve(history, k=5)) == 5
    # Back to the default model, whose vectors are wider: Chroma would refuse to mix widths.
    build_index(store, settings)
    retriever = load_retriever(settings)
    assert retriever.model.item_vectors().shape[1] > width
    assert retriever.index.hybrid.count() == len(store.items())
    got = retriever.retrieve(history, k=5)
    assert len(got) == 5 and not set(history) & {c.item_id for c in got}


def test_index_and_eval_fit_the_retriever_by_one_recipe(tmp_path):
    """`muse index` once needed 3 items per user where `muse eval` needed 2: both now call
    `fit_hybrid`, so users with two items count and the fusion weights agree."""
    from retrieval.hybrid import fit_hybrid

    settings = Settings(data_dir=tmp_path)
    store = SQLiteStore(settings.db_path)
    items = load_items(DEMO / "demo_items.jsonl")[:40]
    store.upsert_items(items)
    rng = np.random.default_rng(0)
    # 4 users with 3 items (fewer than MIN_USERS_TO_FIT) and 8 with 2.
    sizes = [3] * 4 + [2] * 8
    sequences = {f"u{n}": [items[i].id for i in rng.choice(len(items), m, replace=False)] for n, m in enumerate(sizes)}
    store.add_events(
        [Interaction(u, item, 1000.0 + t, "view") for u, seq in sequences.items() for t, item in enumerate(seq)]
    )
    config = HybridConfig(sasrec=False, ease_rank=8, transition_rank=8)
    report = build_index(store, settings, config)
    assert report["fitted"], "users with two items count towards fitting"
    ids = [it.id for it in items]
    content = load_retriever(settings).index.content_vectors(ids)
    assert report["weights"] == fit_hybrid(ids, content, list(sequences.values()), settings.seed, config).weights

"""People in a chat request, end to end: the demo catalog with invented credits (director and
cast lists, as `muse ingest --facts` stores them), served over real HTTP, asked through the
official OpenAI client with the LLM up and down. A director asked for filters the picks to their
films, an actor turned down is never in one, and the reply says what it read."""

from __future__ import annotations

import pytest

from agent.catalog import load_file
from tests.conftest import DEMO, serve_demo

DIRECTORS = ["Mara Ellison", "Tobias Quell", "Ines Varga", "Owen Hartigan", "Lucia Brandt"]
CAST = ["Nadia Okafor", "Felix Adeyemi", "Clara Voss", "Jonah Petrov", "Rosa Lindqvist", "Emil Sato", "Hana Moretti"]


def credited():
    """The demo's items, each with one director and two cast members, assigned by position."""
    items = load_file(DEMO / "demo_items.jsonl").items
    for n, it in enumerate(items):
        it.metadata["director"] = [DIRECTORS[n % len(DIRECTORS)]]
        it.metadata["cast"] = [CAST[n % len(CAST)], CAST[(n + 3) % len(CAST)]]
    return items


@pytest.fixture(scope="module")
def people_data(tmp_path_factory):
    from agent.config import Settings
    from agent.indexing import build_index
    from agent.store import SQLiteStore

    folder = tmp_path_factory.mktemp("people-data")
    store = SQLiteStore(folder / "muse.db")
    store.upsert_items(credited())
    store.add_events(load_file(DEMO / "demo_interactions.jsonl").interactions)
    build_index(store, Settings(data_dir=folder))
    store.close()
    return folder


@pytest.fixture(scope="module", params=["up", "down"])
def service(request, people_data, tiny_model, tiny_registry, tmp_path_factory):
    with serve_demo(people_data, tiny_model, tiny_registry, tmp_path_factory.mktemp("people")) as server:
        server.engine.mode = request.param
        yield server


def chat(service, text, user="demo-user-01"):
    from openai import OpenAI

    client = OpenAI(base_url=f"{service.url}/v1", api_key="unused", max_retries=0, timeout=120)
    reply = client.chat.completions.create(model="muse", user=user, messages=[{"role": "user", "content": text}])
    return reply.choices[0].message.content, reply.model_extra["muse"]


def test_a_director_asked_for_filters_the_picks_and_is_said(service):
    by_id = {it.id: it for it in credited()}
    text, muse = chat(service, "Something directed by Ines Varga, please")
    picks = [by_id[it["id"]] for it in muse["items"]]
    assert len(picks) >= 3 and all(it.metadata["director"] == ["Ines Varga"] for it in picks)
    assert "directed by Ines Varga" in text


def test_an_actor_turned_down_is_in_no_pick(service):
    by_id = {it.id: it for it in credited()}
    text, muse = chat(service, "A comedy, but nothing with Clara Voss")
    picks = [by_id[it["id"]] for it in muse["items"]]
    assert picks and all("Comedy" in it.categories for it in picks)
    assert not any("Clara Voss" in it.metadata["cast"] for it in picks)
    assert "Clara Voss" in text  # the reply's "I read" line names the exclusion

"""What people say in a chat, end to end: the real HTTP service on the demo catalog, the
official OpenAI client, with the LLM up (the tiny model in-process) and down. Each request kind
that issue 23 found misread: negation, named dislikes, named likes of a new user, comparatives
after a first answer, era words, metadata fields, a count, "more like the second one" without a
false "you watched", a greeting; and a soft preference ("ideally from the 90s"), which re-weights
the picks without filtering them."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from agent.catalog import load_file
from agent.pipeline.grounding import natural_title
from tests.conftest import DEMO, serve_demo

USER = "demo-user-01"
ITEMS = {it.id: it for it in load_file(DEMO / "demo_items.jsonl").items}
TITLE = {it.title: it.id for it in ITEMS.values()}


@pytest.fixture(scope="module", params=["up", "down"])
def service(request, demo_data, tiny_model, tiny_registry, tmp_path_factory):
    with serve_demo(demo_data, tiny_model, tiny_registry, tmp_path_factory.mktemp("chat")) as server:
        server.engine.mode = request.param
        yield server


def chat(service, messages, user=USER):
    from openai import OpenAI

    client = OpenAI(base_url=f"{service.url}/v1", api_key="unused", max_retries=0, timeout=120)
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    reply = client.chat.completions.create(model="muse", user=user, messages=messages)
    return reply.choices[0].message.content, reply.model_extra["muse"]


def picks(muse) -> list:
    return [ITEMS[it["id"]] for it in muse["items"]]


def history(service, user) -> set[str]:
    events = httpx.get(f"{service.url}/v1/users/{user}/history").json().get("events", [])
    return {e["item_id"] for e in events}


def test_negation(service):
    _, muse = chat(service, "something for my kids, nothing violent or scary")
    got = picks(muse)
    assert got and all("Family" in it.categories for it in got)
    assert not any({"Horror", "Action", "Crime", "War"} & set(it.categories) for it in got)
    _, muse = chat(service, "a thriller, but no horror please")
    assert picks(muse) and all("Horror" not in it.categories and "Thriller" in it.categories for it in picks(muse))


def test_a_named_dislike_is_never_recommended(service):
    _, muse = chat(service, "I really did not like Substitute Santa. Give me a comedy")
    assert picks(muse) and "demo-005" not in [it.id for it in picks(muse)]
    assert all("Comedy" in it.categories for it in picks(muse))


def test_a_new_user_naming_films_gets_their_neighbours_and_sees_them_cited(service):
    user = f"new-{uuid.uuid4().hex[:8]}"
    text, muse = chat(service, "I loved Depth Charge Protocol and Steel Harbor. What else would I like?", user)
    ids = [it.id for it in picks(muse)]
    assert ids and not {"demo-160", "demo-152"} & set(ids)  # not recommended back
    assert 'you liked "Depth Charge Protocol"' in text
    cited = [it for it in muse["items"] if it["cited"]]
    assert cited and all("You said you liked" in it["explanation"] for it in cited)
    assert not any("You watched" in it["explanation"] for it in muse["items"])  # they watched nothing here


def test_comparatives_after_a_first_answer(service):
    first = [{"role": "user", "content": "something light from the 90s"}]
    text, muse = chat(service, first)
    assert picks(muse) and all(it.metadata["tone"] == "light" for it in picks(muse))
    follow = first + [{"role": "assistant", "content": text}, {"role": "user", "content": "darker, please"}]
    _, muse = chat(service, follow)
    got = picks(muse)
    assert got and all(it.metadata["tone"] in ("thoughtful", "tense", "dark") for it in got)
    assert all(1990 <= it.year <= 1999 for it in got)
    _, muse = chat(service, "something like Rocket to the Red Planet, but much newer")
    assert picks(muse) and all(it.year >= 1964 for it in picks(muse))


def test_era_words_metadata_fields_and_a_count(service):
    _, muse = chat(service, "a gripping thriller, not too old")
    assert picks(muse) and all(it.year >= 1995 and "Thriller" in it.categories for it in picks(muse))
    _, muse = chat(service, "a series I can binge")
    assert picks(muse) and all(it.metadata["kind"] == "series" for it in picks(muse))
    _, muse = chat(service, "a short film, under 90 minutes")
    assert picks(muse) and all(it.metadata["runtime_min"] < 90 for it in picks(muse))
    _, muse = chat(service, "I had a rough week, something uplifting")
    assert picks(muse) and all(it.metadata["tone"] == "uplifting" for it in picks(muse))
    _, muse = chat(service, "give me three documentaries")
    assert len(picks(muse)) == 3 and all("Documentary" in it.categories for it in picks(muse))


def test_more_like_the_second_one_claims_no_false_watch(service):
    first = [{"role": "user", "content": "a comedy"}]
    text, muse = chat(service, first)
    second = muse["items"][1]["id"]
    follow = first + [{"role": "assistant", "content": text}, {"role": "user", "content": "more like the second one"}]
    text, muse = chat(service, follow)
    watched = history(service, USER)
    assert picks(muse) and second not in [it.id for it in picks(muse)]
    assert f'more like "{natural_title(ITEMS[second].title)}"' in text  # the reply says which pick it read
    for it in muse["items"]:
        for title in re.findall(r'[Yy]ou watched ((?:"[^"]+"(?: and )?)+)', it["explanation"]):
            for t in re.findall(r'"([^"]+)"', title):
                assert TITLE[t] in watched, f"claims {t!r} watched: {it['explanation']}"
        assert all(c["id"] in watched or c["id"] == second for c in it["cited"])


def test_a_greeting_gets_a_question_not_a_claim(service):
    user = f"new-{uuid.uuid4().hex[:8]}"
    text, muse = chat(service, "hi", user)
    assert text.startswith("Hi! Tell me what you are in the mood for")
    assert muse["onboarding"]  # a new user is offered items to mark
    assert not any("what you asked for" in it["explanation"] for it in muse["items"])


CITED = re.compile(
    r'(you watched|you said you liked|you looked at|you asked for more like) ((?:"[^"]+"(?: and )?)+)', re.IGNORECASE
)


def cited_verbs(explanation: str) -> dict[str, str]:
    """Each film an explanation's opening cites -> the verb it is cited with (lower case)."""
    return {t: verb.lower() for verb, titles in CITED.findall(explanation) for t in re.findall(r'"([^"]+)"', titles)}


def test_every_cited_film_is_cited_by_what_the_user_did(service):
    """A new user marks three onboarding films (``muse.liked``), then opens one pick's page (a
    click) and watches another (a view): each explanation says of every film it cites what the
    user did with it (catalog.CITED_AS), never "watched" of a film they only marked or opened."""
    user = f"new-{uuid.uuid4().hex[:8]}"
    url = f"{service.url}/v1/chat/completions"
    liked = [it["id"] for it in httpx.get(f"{service.url}/v1/onboarding").json()["items"][:3]]
    body = {"model": "muse", "user": user, "muse": {"liked": liked, "k": 5}}
    first = httpx.post(url, json={**body, "messages": [{"role": "user", "content": "something good"}]}, timeout=120)
    items = first.json()["muse"]["items"]
    assert all(TITLE[t] in liked for it in items for t in cited_verbs(it["explanation"]))
    said = [v for it in items for v in cited_verbs(it["explanation"]).values()]
    assert said and set(said) == {"you said you liked"}, [it["explanation"] for it in items]

    opened, watched = items[0]["id"], items[1]["id"]
    events = [
        {"user_id": user, "item_id": opened, "kind": "click", "idempotency_key": f"{user}-click"},
        {"user_id": user, "item_id": watched, "kind": "view", "idempotency_key": f"{user}-view"},
    ]
    assert httpx.post(f"{service.url}/v1/feedback", json={"events": events}).status_code == 200
    did = {i: "you said you liked" for i in liked} | {opened: "you looked at", watched: "you watched"}
    again = httpx.post(url, json={**body, "messages": [{"role": "user", "content": "more please"}]}, timeout=120)
    seen = {}
    for it in again.json()["muse"]["items"]:
        for title, verb in cited_verbs(it["explanation"]).items():
            assert verb == did[TITLE[title]], it["explanation"]
            seen[TITLE[title]] = verb
    assert set(seen.values()) == {"you said you liked", "you looked at", "you watched"}, seen


def test_a_soft_preference_reweights_without_filtering(service):
    user = f"new-{uuid.uuid4().hex[:8]}"
    _, plain = chat(service, "A drama, please.", user)
    text, soft = chat(service, "A drama, ideally from the 90s.", user)
    nineties = [sum(1990 <= it.year <= 1999 for it in picks(m)) for m in (plain, soft)]
    assert picks(soft) and all("Drama" in it.categories for it in picks(soft))  # the hard part still filters
    assert nineties[1] > nineties[0], nineties  # the soft part lifts 90s dramas
    assert "preferably 1990-1999" in text
    # the demo has at most one 90s western series: a preference few films meet still leaves a full answer
    _, few = chat(service, "A western, ideally a series from the 90s.", user)
    assert len(picks(few)) == len(picks(plain)) and all("Western" in it.categories for it in picks(few))

"""`muse bench agent`: N requests against a running Muse service, every answer checked.

Users are drawn (seeded) from the service's own event store; requests alternate between
``/v1/recommendations`` and streamed chat completions with natural-language asks. Reported:

- latency: the whole answer (every request), and for the streamed half the first content
  (the picks), the moment the last explanation arrived and the time the server took to read
  the conversation (``muse.intent.read_ms``), each as p50/p95 (nearest rank);
- the degraded rate and the HTTP statuses;
- invariants: every item is among the answer's candidates, in the catalog, not in the user's
  history, shown once; a streamed reply's text holds every text of its final payload;
- text outcomes (``llm``, ``fallback``, ``template``) and the template share;
- a text-quality table computed by code (``agent.pipeline.text_quality``) over every text: invented
  titles, claims that the reader already watched the pick, explanations citing no real history
  item, drafts not naming the pick, cut-off texts, repeated citations, the unique-sentence
  ratio, explanations that address the reader, and the share of texts that mention a real
  attribute of the pick (a category, its year, words of its description);
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from agent.bench.latency import summary
from agent.catalog import Item
from agent.config import Settings
from agent.pipeline.generation import Evidence, model_part
from agent.pipeline.grounding import GroundingCheck
from agent.pipeline.support import support
from agent.pipeline.text_facts import shown_facts
from agent.pipeline.text_quality import (
    addresses_reader,
    cited_titles,
    claims_watched_pick,
    is_cut_off,
    mentions_attribute,
    names_history,
    names_title,
    repeats_citation,
    unique_sentence_ratio,
)
from agent.store import open_store
from agent.store.history import history_of

logger = logging.getLogger(__name__)

ASKS = [
    "something light from the 90s, nothing I've seen",
    "a gripping thriller",
    "a drama after 2000",
    "surprise me",
    "something funny for a family evening",
    "sci-fi from the 80s",
]
QUALITY_KEYS = (
    "invented_titles",
    "claims_watched_pick",
    "explanations_citing_no_history",
    "drafts_not_naming_pick",
    "cut_off",
    "repeated_citations",
    "explanations_not_addressing_reader",
    "drafts_naming_history",
)


def read_sse(response, started: float) -> tuple[str, dict | None, list[float], list[str]]:
    """(content, the final chunk's ``muse`` payload, arrival time of each content chunk, the
    raw ``data:`` payloads) of a streamed chat completion."""
    content, muse, times, raw = [], None, [], []
    for line in response.iter_lines():
        if not line.startswith("data: "):
            continue
        raw.append(line[6:])
        if line == "data: [DONE]":
            break
        chunk = json.loads(line[6:])
        delta = chunk["choices"][0]["delta"] if chunk.get("choices") else {}
        if delta.get("content"):
            content.append(delta["content"])
            times.append(time.monotonic() - started)
        if "muse" in chunk:
            muse = chunk["muse"]
    return "".join(content), muse, times, raw


def text_quality(
    answers: Sequence[tuple[list[dict], list[str]]], items: dict[str, Item], check: GroundingCheck, examples: int = 3
) -> dict:
    """The quality table over every text of ``answers`` (each: the answer's items as the API
    returns them, and the titles of the user's history). Under ``examples``: for each check
    that failed, up to ``examples`` of the failing texts with their source (``llm``,
    ``fallback``, ``template``), so a count can be read, not only trusted."""
    counts: Counter = Counter()
    found: dict[str, list[dict]] = {}
    texts, with_attribute = [], 0

    def fail(key: str, failures: int, text: str, item: dict, kind: str) -> None:
        counts[key] += failures
        if failures and len(found.setdefault(key, [])) < examples:
            found[key].append({"text": text, "source": item.get("text_sources", {}).get(kind, "?")})

    for shown, history in answers:
        for it in shown:
            item = items[it["id"]]
            explanation, draft = it["explanation"], it["draft"]
            allowed = [item.title, *history]
            for kind, text in (("explanation", explanation), ("draft", draft)):
                fail("invented_titles", len(check.foreign_titles(text, allowed)), text, it, kind)
                fail("claims_watched_pick", claims_watched_pick(text, item.title), text, it, kind)
                fail("cut_off", is_cut_off(text), text, it, kind)
                with_attribute += mentions_attribute(text, item, history)
                texts.append(text)
            fail(
                "explanations_citing_no_history",
                not cited_titles(explanation, history),
                explanation,
                it,
                "explanation",
            )
            fail(
                "explanations_not_addressing_reader", not addresses_reader(explanation), explanation, it, "explanation"
            )
            fail("drafts_not_naming_pick", not names_title(draft, item.title), draft, it, "draft")
            fail("repeated_citations", repeats_citation(explanation, history), explanation, it, "explanation")
            fail(
                "drafts_naming_history", bool(names_history(draft, item, history)), draft, it, "draft"
            )  # a pitch is about the pick
    return {
        "texts": len(texts),
        **{k: counts[k] for k in QUALITY_KEYS},
        "support": text_support(answers, items, examples),
        "unique_sentence_ratio": round(unique_sentence_ratio(texts), 4),
        "share_mentioning_an_attribute": round(with_attribute / len(texts), 4) if texts else None,
        "examples": {k: v[:examples] for k, v in found.items() if v},
    }


def text_support(answers: Sequence[tuple[list[dict], list[str]]], items: dict[str, Item], examples: int = 5) -> dict:
    """The support measure (``agent.pipeline.support``) over every model-written text of
    ``answers`` (source ``llm``; templates are Muse's own words): the model's part of each text
    (after Muse's opening) against the facts its prompt showed (``text_facts.shown_facts``).
    Returns the texts measured, their content words, the unsupported-word rate, the share of
    texts with at least one unsupported word, and up to ``examples`` such texts with their words."""
    measured = words = unsupported = with_any = 0
    found = []
    for shown, _ in answers:
        for it in shown:
            item = items[it["id"]]
            ev = Evidence(item, [items[c["id"]] for c in it.get("cited", []) if c["id"] in items])
            for kind in ("explanation", "draft"):
                if it.get("text_sources", {}).get(kind) != "llm":
                    continue
                s = support(model_part(it[kind], ev, kind), shown_facts(ev, kind))
                measured, words, unsupported = measured + 1, words + len(s.words), unsupported + len(s.unsupported)
                with_any += bool(s.unsupported)
                if s.unsupported and len(found) < examples:
                    found.append({"kind": kind, "text": it[kind], "unsupported": list(s.unsupported)})
    return {
        "model_texts": measured,
        "content_words": words,
        "unsupported_word_rate": round(unsupported / words, 4) if words else None,
        "texts_with_unsupported_share": round(with_any / measured, 4) if measured else None,
        "examples": found,
    }


def run_agent_bench(
    settings: Settings, url: str, n: int = 100, k: int = 5, concurrency: int = 1, seed: int = 0
) -> dict:
    import httpx

    store = open_store(settings.store_url)
    catalog = {it.id: it for it in store.items()}
    users = sorted({e.user_id for e in store.events()})
    if not users:
        raise ValueError("no users in the event store")
    rng = random.Random(seed)
    plan = [(rng.choice(users), n % 2 == 1, ASKS[n % len(ASKS)]) for n in range(n)]
    histories = {u: history_of(store, u) for u, _, _ in plan}
    client = httpx.Client(base_url=url.rstrip("/"), timeout=600, headers=settings.client_headers())

    def one(job):
        user, chat, ask = job
        started = time.monotonic()
        if not chat:
            r = client.post("/v1/recommendations", json={"user_id": user, "k": k})
            return user, r.status_code, r.json() if r.status_code == 200 else None, time.monotonic() - started, None
        body = {
            "model": "muse",
            "user": user,
            "muse": {"k": k},
            "stream": True,
            "messages": [{"role": "user", "content": ask}],
        }
        with client.stream("POST", "/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                r.read()
                return user, r.status_code, None, time.monotonic() - started, None
            content, muse, times, _ = read_sse(r, started)
        return user, r.status_code, muse, time.monotonic() - started, (content, times)

    problems: Counter = Counter()
    outcomes: Counter = Counter()
    latencies, first, explained, reading, answers = [], [], [], [], []
    degraded, statuses = 0, Counter()
    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        for done, (user, status, data, seconds, streamed) in enumerate(pool.map(one, plan), 1):
            statuses[status] += 1
            if data is None:
                continue
            ids = [it["id"] for it in data["items"]]
            problems["outside_candidates"] += len(set(ids) - set(data["candidate_ids"]))
            problems["outside_catalog"] += len(set(ids) - set(catalog))
            problems["from_history"] += len(set(ids) & set(histories[user]))
            problems["duplicates"] += len(ids) - len(set(ids))
            problems["empty_answers"] += not ids
            if streamed is not None:
                content, times = streamed
                problems["streamed_text_differs"] += sum(
                    it[kind] not in content for it in data["items"] for kind in ("explanation", "draft")
                )
                if times:
                    first.append(times[0])
                if len(times) > len(ids):  # chunk 0: the picks; chunks 1..k: the explanations
                    explained.append(times[len(ids)])
                if "read_ms" in data["intent"]:  # (a service before 71bd39d does not say)
                    reading.append(data["intent"]["read_ms"] / 1000)
            for it in data["items"]:
                outcomes.update(it["text_sources"].values())
            answers.append((data["items"], [catalog[i].title for i in histories[user] if i in catalog]))
            latencies.append(seconds)
            degraded += data["degraded"]
            if done % 10 == 0:
                logger.info(f"{done}/{n} requests")
    wall = time.monotonic() - started
    texts = sum(outcomes.values())
    return {
        "url": url,
        "requests": n,
        "k": k,
        "concurrency": concurrency,
        "users": len(histories),
        "catalog_items": len(catalog),
        "http_status": dict(statuses),
        "problems": dict(problems),
        "degraded_answers": degraded,
        "degraded_rate": round(degraded / max(1, len(latencies)), 4),
        "latency_s": {
            "answer": summary(latencies),
            "first_content": summary(first),
            "explanations_done": summary(explained),
            "reading": summary(reading, digits=4),
        },
        "text_outcomes": dict(outcomes),
        "template_share": round((outcomes["fallback"] + outcomes["template"]) / texts, 4) if texts else None,
        "text_quality": text_quality(answers, catalog, GroundingCheck(it.title for it in catalog.values())),
        "wall_s": round(wall, 1),
    }

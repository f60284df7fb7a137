"""`muse bench agent`: N requests against a running Muse service, every answer checked.

Users are drawn (seeded) from the service's own event store; requests alternate between
``/v1/recommendations`` and chat completions with natural-language asks. For each answer:

- every item is among the answer's candidates, exists in the catalog, is not in the user's
  history, and appears once;
- each text's outcome is counted: passed the grounding check first time (``llm``), after one
  regeneration (``regenerated``), failed twice (``fallback``), or not asked of the LLM
  (``template``: degraded, or nothing of the user's to cite).

The grounding failure rate before fallback is (regenerated + fallback) / texts the LLM wrote.
"""

from __future__ import annotations

import random
import statistics
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from agent.bench import percentile
from agent.config import Settings
from agent.indexing import history_of
from agent.store import SQLiteStore

ASKS = ["something light from the 90s, nothing I've seen", "a gripping thriller", "a drama after 2000",
        "surprise me", "something funny for a family evening", "sci-fi from the 80s"]


def run_agent_bench(settings: Settings, url: str, n: int = 100, k: int = 5, concurrency: int = 1, seed: int = 0,
                    say=print) -> dict:
    import httpx

    store = SQLiteStore(settings.db_path)
    catalog = {it.id for it in store.items()}
    users = sorted({e.user_id for e in store.events()})
    if not users:
        raise ValueError(f"no users in {settings.db_path}")
    rng = random.Random(seed)
    plan = [(rng.choice(users), n % 2 == 1, ASKS[n % len(ASKS)]) for n in range(n)]
    histories = {u: set(history_of(store, u)) for u, _, _ in plan}
    client = httpx.Client(base_url=url.rstrip("/"), timeout=600)

    def one(job):
        user, chat, ask = job
        started = time.monotonic()
        if chat:
            r = client.post("/v1/chat/completions", json={"model": "muse", "user": user, "muse": {"k": k},
                                                         "messages": [{"role": "user", "content": ask}]})
        else:
            r = client.post("/v1/recommendations", json={"user_id": user, "k": k})
        data = (r.json()["muse"] if chat else r.json()) if r.status_code == 200 else None
        return user, r.status_code, data, time.monotonic() - started

    problems: Counter = Counter()
    outcomes: Counter = Counter()
    latencies, degraded = [], 0
    started = time.monotonic()
    statuses: Counter = Counter()
    intents: Counter = Counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for done, (user, status, data, seconds) in enumerate(pool.map(one, plan), 1):
            statuses[status] += 1
            if data is None:
                continue
            ids = [it["id"] for it in data["items"]]
            problems["outside_candidates"] += len(set(ids) - set(data["candidate_ids"]))
            problems["outside_catalog"] += len(set(ids) - catalog)
            problems["from_history"] += len(set(ids) & histories[user])
            problems["duplicates"] += len(ids) - len(set(ids))
            problems["empty_answers"] += not ids
            if "intent" in data:
                intents[data["intent"]["source"]] += 1
            for it in data["items"]:
                outcomes.update(it["text_sources"].values())
            latencies.append(seconds)
            degraded += data["degraded"]
            if done % 10 == 0:
                say(f"{done}/{n} requests")
    wall = time.monotonic() - started
    written = outcomes["llm"] + outcomes["regenerated"] + outcomes["fallback"]
    return {
        "url": url, "requests": n, "k": k, "concurrency": concurrency, "users": len(histories),
        "catalog_items": len(catalog), "http_status": dict(statuses), "problems": dict(problems),
        "degraded_answers": degraded, "chat_intent_source": dict(intents),
        "text_outcomes": dict(outcomes),
        "grounding_failure_rate_before_fallback": round((outcomes["regenerated"] + outcomes["fallback"]) / written, 4)
        if written else None,
        "fallback_rate": round(outcomes["fallback"] / written, 4) if written else None,
        "latency_s": {"p50": round(statistics.median(latencies), 3), "p95": round(percentile(latencies, 0.95), 3)},
        "wall_s": round(wall, 1),
    }  # fmt: skip

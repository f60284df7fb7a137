"""`muse bench soak`: a running Muse service under steady load for minutes; errors, latency and
the resident memory of the server's whole process tree (Muse, the vLLM server it started and
vLLM's workers) over time.

    muse serve --demo & SERVER=$!
    muse bench soak --url http://127.0.0.1:8000 --pid $SERVER --minutes 10 --concurrency 16

Each of ``concurrency`` clients loops until the time is up, drawing (seeded) one request of a
mix like a product's: recommendations (40%), a streamed chat completion (30%), feedback with an
idempotency key (20%), a user's history (10%), for users from the service's own event store.
An error is any status other than 200 or any exception (a timeout, a dropped connection).
Memory: the tree's RSS is sampled every ``sample_s``; the baseline is the first sample after
``warmup_s`` (caches and the KV cache are full by then), and the change is the last sample's
against it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import Counter, defaultdict

from agent.bench.agent import ASKS, read_sse
from agent.bench.latency import summary
from agent.config import Settings
from agent.store import open_store

logger = logging.getLogger(__name__)

MIX = (("recommendations", 0.4), ("chat", 0.3), ("feedback", 0.2), ("history", 0.1))


def tree_rss_mb(pid: int) -> dict[str, float]:
    """Resident memory in MiB of process ``pid`` and of all its descendants together."""
    import psutil

    root = psutil.Process(pid)
    children = 0
    for child in root.children(recursive=True):
        try:
            children += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass  # a worker that ended between the listing and the reading
    own = root.memory_info().rss
    return {
        "muse": round(own / 2**20, 1),
        "children": round(children / 2**20, 1),
        "total": round((own + children) / 2**20, 1),
    }


def send(client, route: str, user: str, rng: random.Random, items: list[str], k: int) -> tuple[bool, str | None, str]:
    """One request of the mix on ``route``: ``(ok, why it was degraded or None, HTTP status)``;
    ok means a 200 with a usable body (picks for recommendations and chat). Raises
    ``httpx.HTTPError`` when no response came."""

    def why(answer: dict) -> str | None:
        return (answer.get("degraded_reason") or "degraded") if answer["degraded"] else None

    if route == "recommendations":
        r = client.post("/v1/recommendations", json={"user_id": user, "k": k})
        ok = r.status_code == 200 and bool(r.json()["items"])
        return ok, why(r.json()) if ok else None, str(r.status_code)
    if route == "chat":
        body = {
            "model": "muse",
            "user": user,
            "stream": True,
            "muse": {"k": k},
            "messages": [{"role": "user", "content": rng.choice(ASKS)}],
        }
        with client.stream("POST", "/v1/chat/completions", json=body) as r:
            muse = None
            if r.status_code == 200:
                muse = read_sse(r, time.monotonic())[1]  # None when the stream ended without its final chunk
            else:
                r.read()
        ok = muse is not None and bool(muse["items"])
        return ok, why(muse) if ok else None, str(r.status_code)
    if route == "feedback":
        event = {
            "user_id": user,
            "item_id": rng.choice(items),
            "kind": rng.choice(["click", "like"]),
            "idempotency_key": uuid.UUID(int=rng.getrandbits(128)).hex,
        }
        r = client.post("/v1/feedback", json={"events": [event]})
        return r.status_code == 200 and r.json()["accepted"] == 1, None, str(r.status_code)
    r = client.get(f"/v1/users/{user}/history")
    return r.status_code == 200, None, str(r.status_code)


def memory_change(samples: list[tuple[float, dict]], warmup_s: float) -> dict | None:
    """The RSS change from the first sample at or after ``warmup_s`` seconds to the last, in
    MiB and per cent of the total; None without samples."""
    if not samples:
        return None
    baseline = next((s for t, s in samples if t >= warmup_s), samples[-1])
    last = samples[-1][1]
    return {
        "baseline_mb": baseline,
        "last_mb": last,
        "max_total_mb": max(s["total"] for _, s in samples),
        "change_pct": round(100 * (last["total"] - baseline["total"]) / baseline["total"], 2),
        "samples": len(samples),
        "warmup_s": warmup_s,
    }


def run_soak(
    settings: Settings,
    url: str,
    pid: int | None,
    minutes: float = 10.0,
    concurrency: int = 16,
    seed: int = 0,
    warmup_s: float = 60.0,
    sample_s: float = 5.0,
    k: int = 5,
) -> dict:
    """Load ``url`` for ``minutes`` with ``concurrency`` clients; returns the report (see the
    module docstring). Raises ``ValueError`` when the store holds no users or items."""
    import httpx

    store = open_store(settings.store_url)
    users = sorted({e.user_id for e in store.events()})
    items = [it.id for it in store.items()]
    store.close()
    if not users or not items:
        raise ValueError("no users or no items in the event store")
    client = httpx.Client(
        base_url=url.rstrip("/"),
        timeout=120,
        headers=settings.client_headers(),
        limits=httpx.Limits(max_connections=concurrency + 2),
    )
    end = time.monotonic() + minutes * 60
    latencies: dict[str, list[float]] = defaultdict(list)
    statuses: Counter = Counter()
    errors: list[str] = []
    degraded, reasons = Counter(), Counter()
    lock = threading.Lock()

    def one(rng: random.Random) -> None:
        route = rng.choices([r for r, _ in MIX], [w for _, w in MIX])[0]
        user = rng.choice(users)
        started = time.monotonic()
        try:
            ok, reason, status = send(client, route, user, rng, items, k)
        except httpx.HTTPError as exc:
            ok, reason, status = False, None, type(exc).__name__
        seconds = time.monotonic() - started
        with lock:
            statuses[status] += 1
            latencies[route].append(seconds)
            degraded[route] += reason is not None
            if reason is not None:
                reasons[reason] += 1
            if not ok and len(errors) < 20:
                errors.append(f"{route} for {user}: {status}")

    def worker(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        while time.monotonic() < end:
            one(rng)

    samples: list[tuple[float, dict]] = []
    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(concurrency)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        if pid is not None:
            samples.append((round(time.monotonic() - t0, 1), tree_rss_mb(pid)))
        done = sum(len(v) for v in latencies.values())
        logger.info(
            f"{time.monotonic() - t0:.0f} s: {done} requests, {len(errors)} errors"
            + (f", RSS {samples[-1][1]['total']} MiB" if samples else "")
        )
        time.sleep(sample_s)
    client.close()

    every = [s for v in latencies.values() for s in v]
    requests = len(every)
    failed = requests - statuses["200"]
    memory = memory_change(samples, warmup_s)
    return {
        "url": url,
        "minutes": minutes,
        "concurrency": concurrency,
        "requests": requests,
        "requests_per_s": round(requests / (time.monotonic() - t0), 2),
        "errors": failed,
        "http_status": dict(statuses),
        "first_errors": errors,
        "latency_s": {"all": summary(every), **{r: summary(v) for r, v in sorted(latencies.items())}},
        "degraded": {r: f"{degraded[r]}/{len(latencies[r])}" for r in ("recommendations", "chat")},
        "degraded_reasons": dict(reasons.most_common()),
        "answers_with_llm_texts_per_min": round(
            sum(len(latencies[r]) - degraded[r] for r in ("recommendations", "chat")) / (minutes or 1), 1
        ),
        "memory": memory,
    }

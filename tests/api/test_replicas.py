"""Two `muse serve` processes on one PostgreSQL and one Chroma server, as behind a load balancer.

The demo catalog is ingested into PostgreSQL and indexed into a Chroma server once; then two
real Muse processes (the tiny model in-process) take the same users' writes at the same moment.
Feedback retried through both replicas lands once, an impression shown by one replica can be
answered through the other, and a user forgotten through both at once is deleted exactly once.
Skipped, with the reason, where PostgreSQL cannot start here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from agent.api.background_server import free_port
from tests.conftest import DEMO

pytestmark = pytest.mark.slow

START_S = 240  # a replica loads the retriever and the model; shared CI machines are slow at times
USER = "demo-user-05"


def _wait(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{url} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {START_S} s:\n{log.read_text()[-3000:]}")


@contextmanager
def _process(args: list[str], env: dict, log: Path, url: str | None = None):
    with log.open("w") as out:
        process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if url:
            _wait(url, process, log)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(30)


def _muse(env: dict, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", *args], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def replicas(postgres, tiny_model, tiny_registry, tmp_path_factory):
    """Two Muse base URLs sharing one PostgreSQL database, one Chroma server and one data folder
    (the fitted retriever files, read-only once indexed)."""
    from agent.bench.retrieval import chroma_server
    from tests.postgres_server import new_database

    folder = tmp_path_factory.mktemp("replicas")
    with ExitStack() as stack:
        chroma_url, _ = stack.enter_context(chroma_server(folder))
        env = {
            **os.environ,
            "MUSE_DATA_DIR": str(folder / "data"),
            "MUSE_DATABASE_URL": new_database(postgres),
            "MUSE_CHROMA_URL": chroma_url,
            "MUSE_LLM_ENGINE": "transformers",
            "MUSE_LLM_MODEL": str(tiny_model),
            "MUSE_ADAPTERS_DIR": str(tiny_registry),
            "MUSE_RANK_WEIGHT": "0",  # retrieval order: the writes are what is under test
            "MUSE_LLM_DEADLINE_S": "60",
        }
        for path in ("demo_items.jsonl", "demo_interactions.jsonl"):
            _muse(env, "ingest", str(DEMO / path))
        _muse(env, "index")
        urls = []
        for n in (1, 2):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            cmd = [sys.executable, "-m", "agent.cli", "serve"]
            stack.enter_context(_process(cmd, {**env, "MUSE_PORT": str(port)}, folder / f"muse-{n}.log", url))
            urls.append(url)
        yield urls


def _at_once(calls) -> list:
    """Run the zero-argument ``calls`` at the same moment (one thread each); their results."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return [f.result() for f in [pool.submit(c) for c in calls]]


def test_the_same_feedback_through_two_replicas_at_once_lands_once(replicas):
    a, b = replicas
    before = len(httpx.get(f"{a}/v1/users/{USER}/history").json()["events"])
    items = [e["item_id"] for e in httpx.get(f"{a}/v1/users/demo-user-01/history").json()["events"]][:8]
    batches = [
        {"events": [{"user_id": USER, "item_id": i, "kind": "click", "idempotency_key": f"retry-{i}"}]} for i in items
    ]
    # Every batch is sent to both replicas at once, twice over: 4 copies race for each key.
    sends = [
        lambda url=url, body=body: httpx.post(f"{url}/v1/feedback", json=body, timeout=60)
        for body in batches
        for url in (a, b, a, b)
    ]
    answers = [r.json() for r in _at_once(sends)]
    assert sum(r["accepted"] for r in answers) == len(items)
    assert sum(r["duplicates"] for r in answers) == 3 * len(items)
    for url in (a, b):  # both replicas read the one store
        events = httpx.get(f"{url}/v1/users/{USER}/history").json()["events"]
        assert len(events) == before + len(items)


def test_an_impression_shown_by_one_replica_is_answered_through_the_other(replicas):
    a, b = replicas
    shown = httpx.post(f"{a}/v1/recommendations", json={"user_id": USER, "k": 3}, timeout=120).json()
    item = shown["items"][0]["id"]
    body = {
        "events": [
            {
                "user_id": USER,
                "item_id": item,
                "kind": "like",
                "impression_id": shown["impression_id"],
                "idempotency_key": f"like-{shown['impression_id']}",
            },
        ]
    }
    assert httpx.post(f"{b}/v1/feedback", json=body, timeout=60).json() == {"accepted": 1, "duplicates": 0}
    events = httpx.get(f"{a}/v1/users/{USER}/history").json()["events"]
    assert [e["impression_id"] for e in events if e["kind"] == "like"][-1] == shown["impression_id"]


def test_a_user_forgotten_through_both_replicas_at_once_is_deleted_once(replicas):
    a, b = replicas
    user = "demo-user-07"
    history = httpx.get(f"{a}/v1/users/{user}/history").json()["events"]
    httpx.post(f"{b}/v1/recommendations", json={"user_id": user, "k": 3}, timeout=120).raise_for_status()
    answers = _at_once([lambda url=url: httpx.delete(f"{url}/v1/users/{user}", timeout=60) for url in (a, b)])
    found = [r for r in answers if r.status_code == 200]
    deleted = [r.json()["deleted"] for r in found]
    assert sum(d["events"] for d in deleted) == len(history) and sum(d["users"] for d in deleted) == 1
    assert sum(d["impressions"] for d in deleted) == 1
    assert all(r.status_code in (200, 404) for r in answers)  # the later one finds nothing left
    for url in (a, b):
        assert httpx.get(f"{url}/v1/users/{user}/history").status_code == 404

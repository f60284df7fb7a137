"""Nothing lost, nothing doubled when the server is killed (SIGKILL) while clients write.

50 clients each send their feedback events one request at a time, with idempotency keys, and
retry every request until it is acknowledged, as a client of a production recommender would.
Mid-run the `muse serve` process is killed with SIGKILL and started again on the same data
folder. Afterwards every client's events are stored exactly once. A real `muse serve` process
(its LLM pointed at a closed port: feedback needs none), a real SQLite file, real HTTP.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

WRITERS, EVENTS_EACH = 50, 12


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`muse serve` on ``folder`` in its own process group, (re)started on demand."""

    def __init__(self, folder: Path, log: Path):
        self.port, self.log = _free_port(), log
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "MUSE_DATA_DIR": str(folder),
            "MUSE_PORT": str(self.port),
            "MUSE_LLM_URL": f"http://127.0.0.1:{_free_port()}",
        }  # nothing listens there
        self.process: subprocess.Popen | None = None

    def start(self, within: float = 180) -> None:
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "agent.cli", "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + within
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.process.poll() is None, self.log.read_text()[-2000:]
            assert time.monotonic() < deadline, "muse serve did not start"
            time.sleep(0.2)

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)


@pytest.mark.slow
def test_feedback_survives_sigkill_exactly_once(demo_data, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(demo_data, folder)
    server = Server(folder, tmp_path / "serve.log")
    server.start()
    items = [f"demo-{n:03d}" for n in range(1, 201)]
    acknowledged = [0] * WRITERS
    retries = [0] * WRITERS

    def writer(w: int) -> None:
        with httpx.Client(timeout=30) as client:
            for n in range(EVENTS_EACH):
                event = {
                    "user_id": f"crash-user-{w:02d}",
                    "item_id": items[(w * 7 + n) % len(items)],
                    "kind": "click",
                    "timestamp": 1_700_000_000 + n,
                    "idempotency_key": f"w{w}-e{n}",
                }
                while True:  # retry until acknowledged, with the same key
                    try:
                        r = client.post(f"{server.url}/v1/feedback", json={"events": [event]})
                        if r.status_code == 200:
                            acknowledged[w] += 1
                            break
                    except httpx.HTTPError:
                        pass
                    retries[w] += 1
                    time.sleep(0.05)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    while sum(acknowledged) < WRITERS * EVENTS_EACH // 3:  # a third through: kill it mid-run
        time.sleep(0.01)
    server.kill()
    killed_at = sum(acknowledged)
    server.start()
    for t in threads:
        t.join(300)
    try:
        assert sum(acknowledged) == WRITERS * EVENTS_EACH and sum(retries) > 0, (killed_at, sum(retries))
        for w in range(WRITERS):
            events = httpx.get(f"{server.url}/v1/users/crash-user-{w:02d}/history").json()["events"]
            assert sorted(e["timestamp"] for e in events) == [1_700_000_000 + n for n in range(EVENTS_EACH)], w
    finally:
        server.kill()
    print(f"killed after {killed_at} of {WRITERS * EVENTS_EACH} acknowledgements; {sum(retries)} retries")


def _run_until(args: list[str], env: dict, log: Path, ready, within: float = 300) -> bool:
    """Start ``muse ARGS``; SIGKILL it as soon as ``ready()`` holds. True if it was killed while
    running (False: it finished first)."""
    with log.open("a") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + within
    while process.poll() is None and not ready():
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.02)
    if process.poll() is not None:
        return False
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)
    return True


@pytest.mark.slow
def test_ingest_and_index_killed_midway_then_rerun_agree(tmp_path):
    import json
    import random
    import sqlite3

    from agent.config import Settings
    from agent.indexing import open_index
    from agent.store import SQLiteStore

    rng = random.Random(0)
    genres = ["Drama", "Comedy", "Horror", "Western", "Romance", "Sci-Fi"]
    items = [
        {
            "id": f"syn-{n}",
            "title": f"Film {n}",
            "year": 1950 + n % 70,
            "categories": rng.sample(genres, 2),
            "text": f"A {rng.choice(['quiet', 'loud', 'strange'])} story number {n}.",
        }
        for n in range(400)
    ]
    events = [
        {
            "user_id": f"u{u}",
            "item_id": f"syn-{rng.randrange(400)}",
            "kind": "rating",
            "value": rng.choice([1.0, 3.0, 4.0, 5.0]),
            "timestamp": 1_600_000_000 + u * 1000 + e,
        }
        for u in range(300)
        for e in range(60)
    ]
    data = tmp_path / "dataset"
    data.mkdir()
    (data / "items.jsonl").write_text("\n".join(json.dumps(i) for i in items))
    (data / "interactions.jsonl").write_text("\n".join(json.dumps(e) for e in events))
    folder, log = tmp_path / "muse", tmp_path / "muse.log"
    env = {**os.environ, "MUSE_DATA_DIR": str(folder)}
    db = Settings(data_dir=folder).db_path

    def stored_items() -> int:
        try:
            return sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute("SELECT count(*) FROM items").fetchone()[0]
        except sqlite3.Error:
            return 0

    # Killed once the items are in and the events are being written (two transactions).
    killed_ingest = _run_until(["ingest", str(data)], env, log, lambda: stored_items() > 0)
    subprocess.run([sys.executable, "-m", "agent.cli", "ingest", str(data)], env=env, check=True, capture_output=True)
    store = SQLiteStore(db)
    distinct = {(e["user_id"], e["item_id"], e["timestamp"]) for e in events}
    assert store.counts()["items"] == 400 and store.counts()["events"] == len(distinct)

    # Killed while it embeds the catalog into Chroma.
    killed_index = _run_until(["index"], env, log, lambda: "embed items" in log.read_text())
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "index"], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    index = open_index(Settings(data_dir=folder))
    ids = {it.id for it in store.items()}
    assert set(index.content.get(include=[])["ids"]) == ids == set(index.hybrid.get(include=[])["ids"])
    assert killed_ingest and killed_index  # both runs really were cut short

"""`muse bench retrieval`: Muse's hybrid-vector search at catalog scale, on a Chroma server.

    muse bench retrieval --items 1000000

A synthetic catalog of ``items`` vectors goes into one collection of a Chroma server (one
started in a temporary folder and stopped at the end, or the server at ``url``), with the HNSW
settings of ``retrieval.index.ItemIndex``: inner-product space, ``ef_construction`` 200,
``max_neighbors`` 32, ``ef_search`` 400. The report gives

- the build: seconds spent in the ``add`` calls (batches as large as the server takes: its
  ``max_batch_size``, and at most ``PAYLOAD_BYTES`` of request body), the server's resident
  memory (before, peak, after) and the store's size on disk (MiB, allocated blocks as ``du``
  counts them);
- query latency at each concurrency level: ``queries`` fresh queries asking for the top ``k``
  (100), sent by that many client threads, p50/p95/max in seconds and queries per second;
- recall@k of the HNSW answers against the exact top ``k`` (numpy brute force, the same inner
  product), over every query of every level.

The data: ``dim`` defaults to 2560, the width of Muse's ``muse_hybrid`` vectors at full rank
(SASRec 128 + EASE 1024 + transition 1024 + MiniLM content 384, ``retrieval.hybrid``). Item
vectors are a clustered Gaussian mixture, not uniform noise (no neighbourhood structure, which
misstates HNSW recall): one cluster centre per ``CLUSTER_SIZE`` items, each item its centre
plus noise of ``SPREAD`` times the centres' scale, and the variance of coordinate ``j``
decaying like ``1 / (j + 1)``, as in the SVD factors Muse stores (``right = V sqrt(S)``). The
constants were set against the fitted hybrid vectors of ml-latest-small (9,742 items): there
50/80/90/95% of the variance lies in 56/233/399/901 principal components and the log of the
vector lengths has a standard deviation of 0.098; this mixture at 9,742 items gives
26/147/471/974 components and 0.099. Lengths matter in an inner-product space (maximum
inner-product search gets harder as they spread); the mixture's own spread already matches the
fitted one, so no length factor is added. A query is a fresh draw from the mixture (a random
centre plus noise). All of it is seeded (``np.random.default_rng``) and generated in fixed
blocks of ``BLOCK`` rows, so the exact search regenerates the catalog instead of holding it
(1M x 2560 float32 is 9.5 GiB). Metadata is one small integer per item (its cluster).

The client and a server started here share the machine, so on a small one the latencies at
high concurrency include the client's own work (encoding each 2560-float query as JSON).
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

from agent.api.background_server import free_port
from agent.bench.latency import summary

logger = logging.getLogger(__name__)

COLLECTION = "muse_bench_retrieval"
# The settings of retrieval.index.ItemIndex, so the figures are those of Muse's collections.
HNSW = {"space": "ip", "ef_construction": 200, "max_neighbors": 32, "ef_search": 400}
DIM = 2560  # SASRec 128 + EASE 1024 + transition 1024 + MiniLM 384
CLUSTER_SIZE = 100  # items per mixture component on average
SPREAD = 1.0  # within-cluster noise, relative to the spread of the centres
BLOCK = 1000  # rows per seeded block of the synthetic catalog
PAYLOAD_BYTES = 32 * 2**20  # under the server's default 40 MiB request limit (max_payload_size_bytes)
MIB = 2**20


class Catalog:
    """The seeded synthetic catalog: ``rows(start, stop)`` gives items ``start..stop-1`` as
    (cluster ids ``(n,)`` int64, vectors ``(n, dim)`` float32), the same on every call."""

    def __init__(self, items: int, dim: int, seed: int):
        import numpy as np

        self.items, self.dim, self.seed = items, dim, seed
        rng = np.random.default_rng([seed, 0])
        # Coordinate j has variance proportional to 1 / (j + 1); the total is 1.
        scale = 1.0 / np.sqrt(np.arange(1, dim + 1))
        self.scale = (scale / np.linalg.norm(scale)).astype(np.float32)
        self.clusters = max(1, round(items / CLUSTER_SIZE))
        self.centres = rng.standard_normal((self.clusters, dim), dtype=np.float32) * self.scale

    def _block(self, b: int):
        import numpy as np

        rng = np.random.default_rng([self.seed, 1, b])
        n = min(BLOCK, self.items - b * BLOCK)
        cluster = rng.integers(self.clusters, size=n)
        noise = rng.standard_normal((n, self.dim), dtype=np.float32)
        return cluster, self.centres[cluster] + SPREAD * noise * self.scale

    def rows(self, start: int, stop: int):
        import numpy as np

        parts = [self._block(b) for b in range(start // BLOCK, (stop - 1) // BLOCK + 1)]
        offset = start - (start // BLOCK) * BLOCK
        cluster = np.concatenate([c for c, _ in parts])[offset : offset + stop - start]
        return cluster, np.concatenate([x for _, x in parts])[offset : offset + stop - start]

    def queries(self, n: int, stream: int):
        """``n`` fresh draws from the mixture, ``(n, dim)`` float32; ``stream`` picks the seed."""
        import numpy as np

        rng = np.random.default_rng([self.seed, 2, stream])
        cluster = rng.integers(self.clusters, size=n)
        return self.centres[cluster] + SPREAD * rng.standard_normal((n, self.dim), dtype=np.float32) * self.scale


def exact_top_k(catalog: Catalog, queries, k: int, block: int = 20_000):
    """Indices ``(len(queries), k)`` of the items of largest inner product with each query, best
    first, by brute force over the regenerated catalog ``block`` rows at a time."""
    import numpy as np

    k = min(k, catalog.items)
    best_score = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_id = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, catalog.items, block):
        stop = min(start + block, catalog.items)
        scores = np.concatenate([best_score, queries @ catalog.rows(start, stop)[1].T], axis=1)
        ids = np.concatenate([best_id, np.broadcast_to(np.arange(start, stop), (len(queries), stop - start))], axis=1)
        keep = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        best_score, best_id = np.take_along_axis(scores, keep, 1), np.take_along_axis(ids, keep, 1)
    order = np.argsort(-best_score, axis=1)
    return np.take_along_axis(best_id, order, 1)


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` and its descendants, MiB."""
    import psutil

    root = psutil.Process(pid)
    total = root.memory_info().rss
    for child in root.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return round(total / MIB, 1)


def peak_rss_mib(pid: int) -> float | None:
    """The kernel's high-water mark of ``pid``'s resident memory (VmHWM), MiB; None where
    /proc does not give it (not Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def disk_mib(folder: Path) -> float:
    """Allocated size of everything under ``folder`` (what ``du`` counts), MiB."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass  # a file the server removed meanwhile
    return round(total / MIB, 1)


@contextmanager
def chroma_server(folder: Path, start_timeout_s: float = 120.0) -> Iterator[tuple[str, int]]:
    """A ``chroma run`` server storing under ``folder / "chroma"`` (its log in ``folder /
    "chroma.log"``) on a free local port: yields ``(url, pid)``; stopped on leaving, also on
    error. Raises ``RuntimeError`` when it does not answer within ``start_timeout_s``."""
    import shutil
    import urllib.request

    chroma = Path(sys.executable).with_name("chroma")
    command = str(chroma) if chroma.exists() else shutil.which("chroma")
    if command is None:
        raise RuntimeError("no `chroma` command next to this Python or on PATH (pip install chromadb)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "chroma.log", "wb") as log:
        proc = subprocess.Popen(
            [command, "run", "--path", str(folder / "chroma"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the Chroma server did not start: see {folder / 'chroma.log'}") from None
                time.sleep(0.3)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def batch_size(client, dim: int) -> int:
    """Records per ``add``: the server's ``max_batch_size``, fewer when that many vectors (sent
    base64-encoded, with an id and a small metadata) would pass ``PAYLOAD_BYTES``."""
    per_record = 4 * math.ceil(4 * dim / 3) + 64
    return max(1, min(client.get_max_batch_size(), PAYLOAD_BYTES // per_record))


def build(collection, catalog: Catalog, batch: int, sample: Callable[[], float | None]) -> dict:
    """Add the whole catalog in batches of ``batch``; logs progress every ~10%. Returns the
    seconds spent in ``add``, the wall seconds (with generating the data), the batches and the
    largest of the ``sample()`` memory readings taken after each batch."""
    started, in_add, batches, peak = time.perf_counter(), 0.0, 0, None
    mark = 0.1
    for start in range(0, catalog.items, batch):
        stop = min(start + batch, catalog.items)
        cluster, vectors = catalog.rows(start, stop)
        t = time.perf_counter()
        collection.add(
            ids=[f"i{n}" for n in range(start, stop)],
            embeddings=vectors,
            metadatas=[{"cluster": int(c)} for c in cluster],
        )
        in_add += time.perf_counter() - t
        batches += 1
        rss = sample()
        peak = max(peak or 0.0, rss) if rss is not None else peak
        if stop / catalog.items >= mark or stop == catalog.items:
            mark = math.floor(10 * stop / catalog.items) / 10 + 0.1
            logger.info(
                f"{stop:,}/{catalog.items:,} items in {time.perf_counter() - started:.0f} s"
                + (f", server RSS {rss:,.0f} MiB" if rss is not None else "")
            )
    return {
        "build_s": round(in_add, 2),
        "build_wall_s": round(time.perf_counter() - started, 2),
        "batches": batches,
        "sampled_peak_mib": peak,
    }


def run_level(collection, queries, k: int, concurrency: int) -> tuple[dict, list[list[str]]]:
    """Each query once, ``concurrency`` at a time: the latency summary (seconds), queries per
    second and the ids each query got, in query order."""
    import numpy as np

    latencies: list[float] = [0.0] * len(queries)

    def one(n: int) -> list[str]:
        t = time.perf_counter()
        got = collection.query(query_embeddings=[np.asarray(queries[n])], n_results=k, include=["distances"])
        latencies[n] = time.perf_counter() - t
        return got["ids"][0]

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        ids = list(pool.map(one, range(len(queries))))
    wall = time.perf_counter() - started
    stats = {"concurrency": concurrency, **summary(latencies, digits=4), "qps": round(len(queries) / wall, 1)}
    return stats, ids


def recall(got: list[list[str]], exact, k: int) -> list[float]:
    """Per query: the share of the exact top ``k`` among the ids HNSW returned."""
    return [len({int(i[1:]) for i in ids} & set(row.tolist())) / k for ids, row in zip(got, exact)]


def run_retrieval_bench(
    items: int,
    dim: int = DIM,
    queries: int = 200,
    concurrency: Sequence[int] = (1, 16),
    k: int = 100,
    seed: int = 0,
    url: str | None = None,
    work_dir: Path | None = None,
    pid: int | None = None,
) -> dict:
    """Build, query and score a synthetic catalog of ``items`` vectors of width ``dim`` in a
    Chroma server (see the module docstring); returns the report, times in seconds, memory and
    disk in MiB.

    Without ``url`` a server is started with its store under ``work_dir / "chroma"`` (a
    temporary folder, removed afterwards, when ``work_dir`` is None; a given one is kept) and
    stopped at the end, also on error. With ``url`` the server there is used: ``pid`` (its
    process) and ``work_dir`` (its ``--path``) are then optional and give the memory and disk
    figures (None without them); the bench collection is dropped from it at the end. Each
    concurrency level sends ``queries`` fresh queries for the top ``k``. Raises ``ValueError``
    on no items, no queries or no concurrency level.

    ``memory_mib``: the resident memory of the server's process tree ``before_build``,
    ``after_build`` and ``after_queries``, the largest reading after any batch
    (``sampled_peak``) and the kernel's high-water mark of the server process (``peak``,
    VmHWM, Linux only); ``memory_per_item_kib`` is the growth during the build per item (it
    includes the server's fixed caches, so it overstates the cost of an item on small
    catalogs)."""
    if items < 1 or queries < 1 or not concurrency:
        raise ValueError(f"need items, queries and a concurrency level, got {items}, {queries}, {concurrency}")
    if url is not None:
        store = Path(work_dir) if work_dir is not None else None
        return _bench(url, pid, store, items, dim, queries, concurrency, k, seed, started=False)
    with ExitStack() as stack:
        if work_dir is None:
            work_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="muse-bench-retrieval-"))
        folder = Path(work_dir)
        server_url, server_pid = stack.enter_context(chroma_server(folder))
        return _bench(server_url, server_pid, folder / "chroma", items, dim, queries, concurrency, k, seed, True)


def _bench(url, pid, store, items, dim, queries, concurrency, k, seed, started: bool) -> dict:
    import chromadb
    import numpy as np

    from retrieval.index import chroma_client

    client = chroma_client(url=url)
    if COLLECTION in {c.name for c in client.list_collections()}:
        client.delete_collection(COLLECTION)  # left by an earlier run that was killed
    collection = client.create_collection(COLLECTION, configuration={"hnsw": HNSW}, embedding_function=None)
    try:
        catalog = Catalog(items, dim, seed)
        batch = batch_size(client, dim)
        k = min(k, items)
        memory: dict = {"before_build": rss_mib(pid) if pid else None}
        logger.info(f"adding {items:,} vectors of width {dim} in batches of {batch:,} to {url}")
        built = build(collection, catalog, batch, lambda: rss_mib(pid) if pid else None)
        count = collection.count()
        memory["after_build"] = rss_mib(pid) if pid else None
        disk_after_build = disk_mib(store) if store else None

        levels, got, drawn = [], [], []
        collection.query(query_embeddings=catalog.queries(5, stream=999), n_results=k)  # warm-up, not counted
        for n, c in enumerate(concurrency):
            q = catalog.queries(queries, stream=n)
            stats, ids = run_level(collection, q, k, c)
            levels.append(stats)
            got += ids
            drawn.append(q)
            logger.info(f"concurrency {c}: p50 {stats['p50']} s, p95 {stats['p95']} s, {stats['qps']} queries/s")
        memory["after_queries"] = rss_mib(pid) if pid else None
        memory["peak"] = peak_rss_mib(pid) if pid else None
        memory["sampled_peak"] = built.pop("sampled_peak_mib")

        t = time.perf_counter()
        exact = exact_top_k(catalog, np.concatenate(drawn), k)
        exact_s = time.perf_counter() - t
        scores = recall(got, exact, k)
    finally:
        if not started:
            client.delete_collection(COLLECTION)
    grown = (
        memory["after_build"] - memory["before_build"] if memory["after_build"] and memory["before_build"] else None
    )
    return {
        "url": url,
        "server_started": started,
        "server_pid": pid,
        "chromadb": chromadb.__version__,
        "server_api": client.get_version(),
        "items": items,
        "count": count,
        "dim": dim,
        "clusters": catalog.clusters,
        "seed": seed,
        "hnsw": HNSW,
        "batch": batch,
        "max_batch_size": client.get_max_batch_size(),
        **built,
        "items_per_s": round(items / built["build_s"], 1),
        "vectors_mib": round(items * dim * 4 / MIB, 1),
        "memory_mib": memory,
        "memory_per_item_kib": round(grown * 1024 / items, 2) if grown is not None else None,
        "disk_mib": disk_after_build,
        "disk_per_item_kib": round(disk_after_build * 1024 / items, 2) if disk_after_build is not None else None,
        "k": k,
        "queries_per_level": queries,
        "latency_s": levels,
        "recall_at_k": {
            "mean": round(float(np.mean(scores)), 4),
            "min": round(min(scores), 4),
            "queries": len(scores),
        },
        "exact_search_s": round(exact_s, 2),
    }

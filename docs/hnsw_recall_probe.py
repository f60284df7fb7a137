"""What recovers HNSW recall@100 on a large catalog? (issue 17, after the 1M run of docs/scale.md)

    .venv/bin/python docs/hnsw_recall_probe.py [--items 200000] [--dim 512] [--queries 100]

The 1M x 512 run of `muse bench retrieval` returned 70% of the exact top 100 with Muse's HNSW
settings, and raising ``ef_search`` alone stopped near 80%. This probe builds the same seeded
synthetic catalog (``agent.bench.retrieval.Catalog``) three times in one Chroma server and
scores the same queries against the exact inner-product top 100:

- ``muse``: Muse's settings (inner product, ef_construction 200, M 32, ef_search 400);
- ``denser graph``: inner product, ef_construction 400, M 64, ef_search 400;
- ``euclidean transform``: each item gets one extra coordinate ``sqrt(R^2 - |x|^2)`` (R the
  largest item length) and each query a 0, so that the largest inner product is the nearest
  neighbour in L2 (Bachrach et al., "Speeding up the Xbox recommender system using a Euclidean
  transformation for inner-product spaces", RecSys 2014); searched in the ``l2`` space with
  Muse's other settings.

Prints one JSON object: per variant, build seconds, recall@100 mean and min, and query p50/p95
at concurrency 1 (seconds).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

VARIANTS = {
    "muse": ({"space": "ip", "ef_construction": 200, "max_neighbors": 32, "ef_search": 400}, False),
    "denser graph": ({"space": "ip", "ef_construction": 400, "max_neighbors": 64, "ef_search": 400}, False),
    "euclidean transform": ({"space": "l2", "ef_construction": 200, "max_neighbors": 32, "ef_search": 400}, True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()

    import numpy as np

    from agent.bench.latency import summary
    from agent.bench.retrieval import Catalog, batch_size, chroma_server, exact_top_k, recall
    from retrieval.index import chroma_client

    catalog = Catalog(args.items, args.dim, seed=0)
    queries = catalog.queries(args.queries, stream=0)
    exact = exact_top_k(catalog, queries, 100)
    # The largest item length, for the transform (one pass over the regenerated catalog).
    radius = max(
        float(np.linalg.norm(catalog.rows(s, min(s + 20_000, args.items))[1], axis=1).max())
        for s in range(0, args.items, 20_000)
    )
    out = {"items": args.items, "dim": args.dim, "queries": args.queries}
    with tempfile.TemporaryDirectory() as folder, chroma_server(Path(folder)) as (url, _):
        client = chroma_client(url=url)
        batch = batch_size(client, args.dim + 1)
        for name, (hnsw, transform) in VARIANTS.items():
            collection = client.create_collection(
                name.replace(" ", "-"), configuration={"hnsw": hnsw}, embedding_function=None
            )
            started = time.perf_counter()
            for start in range(0, args.items, batch):
                stop = min(start + batch, args.items)
                _, x = catalog.rows(start, stop)
                if transform:
                    extra = np.sqrt(np.maximum(radius**2 - (x**2).sum(axis=1), 0.0))[:, None]
                    x = np.hstack([x, extra]).astype(np.float32)
                collection.add(ids=[f"i{n}" for n in range(start, stop)], embeddings=x)
            built = time.perf_counter() - started
            q = np.hstack([queries, np.zeros((len(queries), 1), np.float32)]) if transform else queries
            latencies, got = [], []
            for row in q:
                t = time.perf_counter()
                got.append(collection.query(query_embeddings=[row], n_results=100, include=["distances"])["ids"][0])
                latencies.append(time.perf_counter() - t)
            r = recall(got, exact, 100)
            out[name] = {
                "hnsw": hnsw,
                "build_s": round(built, 1),
                "recall_at_100": {"mean": round(float(np.mean(r)), 4), "min": min(r)},
                "latency_s": summary(latencies, digits=4),
            }
            print(json.dumps({name: out[name]}), flush=True)
            client.delete_collection(collection.name)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

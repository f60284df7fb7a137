"""`muse bench retrieval` on a real Chroma server at a tiny size: the report's shape and sane
values (the timings themselves are the benchmark's, never asserted against a threshold: they
depend on the machine). The synthetic catalog and the exact search are checked without one."""

from __future__ import annotations

import numpy as np
import pytest


def test_catalog_is_the_same_however_it_is_sliced():
    from agent.bench.retrieval import BLOCK, Catalog

    catalog = Catalog(items=2 * BLOCK + 300, dim=16, seed=3)
    clusters, whole = catalog.rows(0, catalog.items)
    assert whole.shape == (catalog.items, 16) and whole.dtype == np.float32
    for start, stop in [(0, 1), (BLOCK - 5, BLOCK + 5), (BLOCK, 2 * BLOCK), (17, catalog.items)]:
        c, x = catalog.rows(start, stop)
        np.testing.assert_array_equal(x, whole[start:stop])
        np.testing.assert_array_equal(c, clusters[start:stop])
    np.testing.assert_array_equal(catalog.queries(4, stream=1), catalog.queries(4, stream=1))
    assert not np.array_equal(catalog.queries(4, stream=1), catalog.queries(4, stream=2))


def test_exact_top_k_is_a_full_sort_by_inner_product():
    from agent.bench.retrieval import Catalog, exact_top_k

    catalog = Catalog(items=2500, dim=32, seed=0)
    queries = catalog.queries(7, stream=0)
    expected = np.argsort(-(queries @ catalog.rows(0, catalog.items)[1].T), axis=1)[:, :50]
    np.testing.assert_array_equal(exact_top_k(catalog, queries, 50, block=600), expected)


@pytest.mark.slow
def test_retrieval_bench_on_a_server_it_starts(tmp_path):
    import psutil

    from agent.bench.retrieval import run_retrieval_bench

    # 3,000 vectors of Muse's width take two batches (the request size bounds a batch).
    report = run_retrieval_bench(3000, queries=20, concurrency=(1, 16), work_dir=tmp_path)
    assert report["server_started"] and not psutil.pid_exists(report["server_pid"])  # stopped at the end
    assert report["count"] == report["items"] == 3000 and report["dim"] == 2560
    assert report["batches"] >= 2 and report["batch"] <= report["max_batch_size"]
    assert 0 < report["build_s"] <= report["build_wall_s"] and report["items_per_s"] > 0
    assert [level["concurrency"] for level in report["latency_s"]] == [1, 16]
    for level in report["latency_s"]:
        assert level["n"] == 20 and 0 < level["p50"] <= level["p95"] <= level["max"] and level["qps"] > 0
    recall = report["recall_at_k"]
    assert report["k"] == 100 and recall["queries"] == 40
    assert 0.9 <= recall["mean"] <= 1.0 and 0.0 <= recall["min"] <= recall["mean"]
    memory = report["memory_mib"]
    assert 0 < memory["before_build"] < memory["after_build"] <= memory["peak"]
    assert report["memory_per_item_kib"] > 0
    assert report["disk_mib"] > 0 and (tmp_path / "chroma" / "chroma.sqlite3").exists()


@pytest.mark.slow
def test_retrieval_bench_on_a_given_server_drops_its_collection(tmp_path):
    from agent.bench.retrieval import COLLECTION, chroma_server, run_retrieval_bench
    from retrieval.index import chroma_client

    with chroma_server(tmp_path) as (url, pid):
        report = run_retrieval_bench(
            500, dim=64, queries=10, concurrency=(2,), url=url, work_dir=tmp_path / "chroma", pid=pid
        )
        assert not report["server_started"] and report["server_pid"] == pid
        assert report["memory_mib"]["after_build"] > 0 and report["disk_mib"] > 0
        assert report["count"] == 500 and report["recall_at_k"]["queries"] == 10
        assert COLLECTION not in {c.name for c in chroma_client(url=url).list_collections()}


@pytest.mark.slow
def test_the_server_it_started_stops_on_error(tmp_path, monkeypatch):
    import psutil

    from agent.bench import retrieval

    servers: list[int] = []

    def failing_rows(self, start, stop):
        servers.extend(p.pid for p in psutil.Process().children() if "chroma" in " ".join(p.cmdline()))
        raise RuntimeError("generation failed (test)")

    monkeypatch.setattr(retrieval.Catalog, "rows", failing_rows)
    with pytest.raises(RuntimeError, match="generation failed"):
        retrieval.run_retrieval_bench(100, dim=8, queries=1, work_dir=tmp_path)
    assert len(servers) == 1 and not psutil.pid_exists(servers[0])

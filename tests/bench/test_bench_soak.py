"""`muse bench soak` on a real server for a few seconds: every route of the mix is exercised,
the errors are counted, and the memory of the serving process is sampled (the figures
themselves are the benchmark's, never asserted here: they depend on the machine)."""

from __future__ import annotations

import os
import shutil


def test_soak_reports_each_route_errors_and_memory(demo_data, tmp_path):
    from agent.api.app import create_app
    from agent.api.background_server import BackgroundServer
    from agent.bench.soak import run_soak
    from agent.config import Settings

    folder = tmp_path / "data"
    shutil.copytree(demo_data, folder)
    settings = Settings(data_dir=folder)
    with BackgroundServer(create_app(settings, engine=None)) as server:
        report = run_soak(
            settings,
            server.url,
            os.getpid(),
            minutes=0.1,
            concurrency=4,
            warmup_s=1.0,
            sample_s=1.0,
        )
    assert report["errors"] == 0 and report["requests"] == report["http_status"]["200"] > 4
    assert set(report["latency_s"]) == {"all", "recommendations", "chat", "feedback", "history"}
    degraded = sum(int(v.split("/")[0]) for v in report["degraded"].values())  # no LLM: every answer
    assert degraded > 0 and report["degraded_reasons"] == {"this service runs without a language model": degraded}
    assert report["answers_with_llm_texts_per_min"] == 0
    memory = report["memory"]
    assert memory["samples"] >= 3 and memory["baseline_mb"]["total"] > 0 and memory["max_total_mb"] > 0

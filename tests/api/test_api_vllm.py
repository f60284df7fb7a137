"""The service as `make run` serves it, against a real vLLM server: the base model writes the
texts (streamed, LLM-written, not degraded), the ranker adapter runs merged in-process; the
server killed mid-conversation (the next turn is answered at once, degraded); the server
restarted (LLM texts again); a client that leaves mid-stream (vLLM aborts its texts); a newly
registered adapter promoted while serving (loaded without restarting anything).

Deadlines are generous: no assertion here depends on how fast the machine is."""

from __future__ import annotations

import json
import shutil
import time

import httpx
import pytest

from agent.api.background_server import BackgroundServer, free_port
from agent.llm.hardware import resolve_dtype
from tests.conftest import random_adapter

pytestmark = [pytest.mark.slow, pytest.mark.vllm]
USER = "demo-user-07"
DEADLINE_S = 600.0  # a slow CI machine must not turn a test into a timing test


def _metric(url: str, name: str, **labels) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {name} {labels}")


def test_service_on_a_real_vllm_server(demo_data, packaged_model, tmp_path):
    from openai import OpenAI

    from agent.api.app import create_app
    from agent.config import Settings
    from agent.llm.server import ServerConfig, VLLMServer
    from agent.store import SQLiteStore

    registry = tmp_path / "adapters"
    random_adapter(packaged_model, registry / "rank-test", layers=[28, 29])
    shutil.copytree(demo_data, tmp_path / "data")
    port = free_port()
    settings = Settings(
        data_dir=tmp_path / "data",
        adapters_dir=registry,
        llm_url=f"http://127.0.0.1:{port}",
        llm_deadline_s=DEADLINE_S,
        llm_retry_after_s=1.0,
        rank_weight=0.5,
    )
    llm = VLLMServer(
        ServerConfig(
            packaged_model,
            port=port,
            dtype=resolve_dtype(settings.llm_dtype),  # as make run: no LoRA
            log_file=tmp_path / "vllm.log",
        )
    )
    llm.start()
    try:
        with BackgroundServer(create_app(settings)) as muse:
            deadline = time.monotonic() + DEADLINE_S
            while httpx.get(f"{muse.url}/readyz?require=llm").status_code != 200:  # the LLM warm-up ran
                assert time.monotonic() < deadline
                time.sleep(0.2)
            client = OpenAI(base_url=f"{muse.url}/v1", api_key="unused", timeout=DEADLINE_S)
            messages = [{"role": "user", "content": "a film for tonight"}]

            def turn(text: str | None = None):
                if text:
                    messages.append({"role": "user", "content": text})
                chunks = list(
                    client.chat.completions.create(
                        model="muse", messages=messages, user=USER, stream=True, extra_body={"muse": {"k": 3}}
                    )
                )
                content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                messages.append({"role": "assistant", "content": content})
                usage.append(chunks[-1].usage)
                return content, chunks[-1].model_extra["muse"]

            usage: list = []
            started = time.monotonic()
            content, first = turn()
            first_usage = usage[-1]
            print(f"first turn, LLM up: {time.monotonic() - started:.1f} s")
            assert first["degraded"] is False and first["adapter"] == "rank-test"  # the merged ranker
            assert len(first["items"]) == 3
            assert {s for it in first["items"] for s in it["text_sources"].values()} <= {"llm", "fallback"}
            assert any(s == "llm" for it in first["items"] for s in it["text_sources"].values())
            assert first_usage.completion_tokens > 0 and first_usage.prompt_tokens > 0  # as vLLM counted them
            assert all(it["explanation"] in content and it["draft"] in content for it in first["items"])

            llm.stop()  # the LLM server dies mid-conversation
            started = time.monotonic()
            _, down = turn("more like the first one")
            assert down["degraded"] is True
            assert {s for it in down["items"] for s in it["text_sources"].values()} == {"template"}
            print(f"turn with the LLM server dead: {time.monotonic() - started:.2f} s (degraded)")
            assert time.monotonic() - started < 60  # a refused connection is not waited for
            assert not {i["id"] for i in first["items"]} & {i["id"] for i in down["items"]}

            llm.start()  # back on the same port
            time.sleep(settings.llm_retry_after_s)
            started = time.monotonic()
            _, back = turn("something else")
            print(f"turn after the restart: {time.monotonic() - started:.1f} s")
            assert back["degraded"] is False and back["adapter"] == "rank-test" and len(back["items"]) == 3

            # A client that reads the picks and leaves: vLLM aborts the texts it was writing.
            def finished() -> float:  # requests vLLM ran to their end (an aborted one is not counted)
                return sum(
                    _metric(llm.url, "vllm:request_success_total", finished_reason=r) for r in ("stop", "length")
                )

            before = finished()
            body = {
                "model": "muse",
                "user": USER,
                "stream": True,
                "muse": {"k": 10},
                "messages": [{"role": "user", "content": "surprise me"}],
            }
            with httpx.stream("POST", f"{muse.url}/v1/chat/completions", json=body, timeout=DEADLINE_S) as r:
                # The line iterator is held: dropped, httpx would close the response at once, and
                # the client would leave before the texts reach vLLM.
                lines = r.iter_lines()
                for line in lines:
                    if line.startswith("data: ") and "Here are" in line:
                        break
                asked = time.monotonic()
                while _metric(llm.url, "vllm:num_requests_running") == 0:  # until the texts are being written
                    assert time.monotonic() - asked < DEADLINE_S, "the texts never reached vLLM"
                    time.sleep(0.01)
            left = time.monotonic()  # the client has left
            while _metric(llm.url, "vllm:num_requests_running") > 0:
                assert time.monotonic() - left < DEADLINE_S, "vLLM still writing for a client that left"
                time.sleep(0.02)
            print(f"vLLM idle {time.monotonic() - left:.2f} s after the client left")
            time.sleep(1.0)  # the metrics of the last engine step
            assert finished() - before < 20  # 10 picks: 20 texts asked; the rest were aborted

            # Promotion while serving: a new adapter enters the registry; the service merges it and
            # scores with it in-process; the vLLM server (texts) is not touched.
            random_adapter(packaged_model, registry / "rank-new", layers=[27, 28, 29], seed=7)
            pid = llm.process.pid
            switched = httpx.post(
                f"{muse.url}/v1/adapters/serve", json={"name": "rank-new"}, timeout=DEADLINE_S
            ).json()
            assert switched == {
                "serving": "rank-new",
                "previous": "rank-test",
                "loaded_at_runtime": True,
                "ab_arms": [],
            }
            started = time.monotonic()
            rec = httpx.post(
                f"{muse.url}/v1/recommendations", json={"user_id": USER, "k": 3}, timeout=DEADLINE_S
            ).json()
            print(f"first answer through the adapter loaded at runtime: {time.monotonic() - started:.1f} s")
            assert rec["degraded"] is False and rec["adapter"] == "rank-new"
            shown = SQLiteStore(settings.db_path).impression(rec["impression_id"])
            assert shown.model == "rank-new"  # the impression carries the new version
            assert json.dumps(shown.texts) and llm.process.pid == pid  # the same vLLM process: no restart
    finally:
        llm.stop()

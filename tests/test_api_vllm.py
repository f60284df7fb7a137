"""The service against a real vLLM server: LLM-ranked answers; the server killed mid-conversation
(the next turn is answered, degraded, at once); the server restarted (LLM-ranked again); a newly
registered adapter promoted while serving (loaded into the same vLLM process, no restart)."""

from __future__ import annotations

import shutil
import time

import pytest

from agent.background_server import BackgroundServer, free_port
from tests.conftest import random_adapter

pytestmark = [pytest.mark.slow, pytest.mark.vllm]
USER = "demo-user-07"


def test_service_survives_the_llm_server_going_away(demo_data, packaged_model, tmp_path):
    from openai import OpenAI

    from agent.app import create_app
    from agent.config import Settings
    from agent.llm.server import ServerConfig, VLLMServer

    registry = tmp_path / "adapters"
    random_adapter(packaged_model, registry / "rank-test", layers=[28, 29])
    shutil.copytree(demo_data, tmp_path / "data")
    port = free_port()
    settings = Settings(data_dir=tmp_path / "data", adapters_dir=registry, llm_url=f"http://127.0.0.1:{port}",
                        llm_deadline_s=60, llm_retry_after_s=1.0, rank_weight=0.5)
    llm = VLLMServer(ServerConfig(packaged_model, settings.adapters(), port=port, log_file=tmp_path / "vllm.log"))
    llm.start()
    try:
        with BackgroundServer(create_app(settings)) as muse:
            client = OpenAI(base_url=f"{muse.url}/v1", api_key="unused")
            messages = [{"role": "user", "content": "a film for tonight"}]

            def turn(text: str | None = None):
                if text:
                    messages.append({"role": "user", "content": text})
                reply = client.chat.completions.create(model="muse", messages=messages, user=USER,
                                                       extra_body={"muse": {"k": 3}})
                messages.append({"role": "assistant", "content": reply.choices[0].message.content})
                return reply.model_extra["muse"]

            started = time.monotonic()
            first = turn()
            print(f"first turn, LLM up: {time.monotonic() - started:.1f} s")
            assert first["degraded"] is False and first["adapter"] == "rank-test"
            assert len(first["items"]) == 3

            llm.stop()  # the LLM server dies mid-conversation
            started = time.monotonic()
            down = turn("more like the first one")
            assert down["degraded"] is True and down["adapter"] is None
            print(f"turn with the LLM server dead: {time.monotonic() - started:.2f} s (degraded)")
            assert time.monotonic() - started < settings.llm_deadline_s
            assert not {i["id"] for i in first["items"]} & {i["id"] for i in down["items"]}

            llm.start()  # back on the same port
            time.sleep(settings.llm_retry_after_s)
            started = time.monotonic()
            back = turn("something else")
            print(f"turn after the restart: {time.monotonic() - started:.1f} s")
            assert back["degraded"] is False and back["adapter"] == "rank-test"
            assert len(back["items"]) == 3

            # Promotion while serving: a new adapter enters the registry and the service loads it
            # into the running vLLM server (runtime LoRA loading); traffic switches to it.
            import httpx

            from agent.store import SQLiteStore

            random_adapter(packaged_model, registry / "rank-new", layers=[27, 28, 29], seed=7)
            pid = llm.process.pid
            switched = httpx.post(f"{muse.url}/v1/adapters/serve", json={"name": "rank-new"}, timeout=120).json()
            assert switched == {"serving": "rank-new", "previous": "rank-test", "loaded_at_runtime": True,
                                "ab_arms": []}
            assert "rank-new" in [m["id"] for m in httpx.get(f"{llm.url}/v1/models").json()["data"]]
            started = time.monotonic()
            rec = httpx.post(f"{muse.url}/v1/recommendations", json={"user_id": USER, "k": 3}, timeout=120).json()
            print(f"first answer through the runtime-loaded adapter: {time.monotonic() - started:.1f} s")
            assert rec["degraded"] is False and rec["adapter"] == "rank-new"
            shown = SQLiteStore(settings.db_path).impression(rec["impression_id"])
            assert shown["model"] == "rank-new"  # the impression carries the new version
            assert llm.process.pid == pid  # the same vLLM process: no restart
    finally:
        llm.stop()

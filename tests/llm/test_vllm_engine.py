"""The real vLLM server on CPU (about a minute to start): every label scored, the same ranking as
the in-process engine for the same model, prompt and adapter; texts under the grammar (no title
outside the evidence can appear); a refused request told apart from a dead server; abandoned
work aborted; an adapter loaded at runtime; and a clean stop."""

from __future__ import annotations

import re

import numpy as np
import pytest

from agent.api.background_server import free_port
from agent.llm.engine import UnknownAdapterError
from agent.llm.server import ServerConfig, VLLMServer
from agent.llm.transformers_engine import TransformersEngine
from agent.llm.vllm_engine import VLLMEngine
from agent.pipeline.ranker import LABELS, rank_conversation
from tests.conftest import random_adapter

pytestmark = [pytest.mark.slow, pytest.mark.vllm]


@pytest.fixture(scope="module")
def served(packaged_model, tmp_path_factory):
    """vLLM serving the packaged model in float32 (for exact comparison) plus one adapter on
    the top layers, as the ranker trainer makes them."""
    folder = tmp_path_factory.mktemp("vllm")
    adapters = {"rank-test": random_adapter(packaged_model, folder / "rank-test", layers=list(range(25, 30)))}
    config = ServerConfig(packaged_model, adapters, port=free_port(), dtype="float32", log_file=folder / "vllm.log")
    server = VLLMServer(config).start()
    yield server, adapters
    server.stop()


def conversations():
    history = ["Toy Story (1995)", "Heat (1995)", "Fargo (1996)", "The Matrix (1999)", "Alien (1979)"]
    movies = [
        f"{t} ({1970 + n})"
        for n, t in enumerate(
            [
                "Babe",
                "Casino",
                "Clueless",
                "Rocky",
                "Jaws",
                "Brazil",
                "Vertigo",
                "Psycho",
                "Gattaca",
                "Tron",
                "Big",
                "Rushmore",
                "Memento",
                "Heat2",
                "Ronin",
                "Se7en",
                "Sneakers",
                "Twister",
                "Speed",
                "Contact",
            ]
        )
    ]
    return [rank_conversation(history[:k], movies[s:] + movies[:s]) for k, s in ((2, 0), (5, 7), (3, 13))]


def same_order(a, b, tie: float = 2e-3) -> bool:
    """The two score lists order every pair the same way, unless the pair is a near-tie."""
    a, b = np.asarray(a), np.asarray(b)
    da, db = a[:, None] - a[None, :], b[:, None] - b[None, :]
    decided = (np.abs(da) > tie) & (np.abs(db) > tie)
    return bool((np.sign(da[decided]) == np.sign(db[decided])).all())


def test_every_label_scored_and_same_ranking_as_transformers(served, packaged_model):
    server, adapters = served
    remote = VLLMEngine(server.url, adapters)
    assert set(remote.models()) == {"base", "rank-test"}
    local = TransformersEngine(packaged_model, adapters, dtype="float32")
    convs = conversations()
    for adapter in (None, "rank-test"):
        got = np.array(remote.label_logprobs(convs, LABELS, adapter))
        want = np.array(local.label_logprobs(convs, LABELS, adapter))
        assert got.shape == (3, 20) and np.isfinite(got).all()
        assert np.allclose(got, want, atol=2e-3), np.abs(got - want).max()
        assert all(same_order(g, w) for g, w in zip(got, want))
    base = np.array(remote.label_logprobs(convs, LABELS))
    tuned = np.array(remote.label_logprobs(convs, LABELS, "rank-test"))
    assert np.abs(base - tuned).max() > 1e-2  # the adapter is really applied
    with pytest.raises(UnknownAdapterError):
        remote.label_logprobs(convs, LABELS, "/tmp/evil-adapter")
    remote.close()


def _vllm_metric(url: str, name: str, **labels) -> float:
    import httpx

    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {name} {labels}")


def test_texts_follow_the_grammar_and_name_no_title_outside_the_evidence(served):
    """Explanations and drafts for demo picks, plus a prompt that begs for a quoted title: no
    continuation holds a double quote or a line break, each ends at a sentence end or comes back
    incomplete, and no shown text names a catalog title outside its evidence."""
    import time

    from agent.catalog import load_file
    from agent.llm.engine import TextJob, complete_sentences
    from agent.pipeline.generation import Evidence, TextPlan, text_job
    from agent.pipeline.grounding import GroundingCheck
    from tests.conftest import DEMO

    server, _ = served
    engine = VLLMEngine(server.url)
    items = [it for it in load_file(DEMO / "demo_items.jsonl").items if it.text]
    check = GroundingCheck(it.title for it in items)
    evidence = [Evidence(items[n], [items[n + 40], items[n + 80]]) for n in range(0, 30, 5)]
    plan = TextPlan(evidence, check, sorted({c for it in items for c in it.categories}))
    begging = [{"role": "user", "content": 'Name three famous films in double quotes, starting with "Gladiator".'}]
    jobs = [
        *plan.jobs,
        TextJob(begging, "My favourite films are", sentences=1, max_tokens=40),
        text_job(Evidence(items[0], []), "draft"),
    ]
    results = dict(engine.complete(jobs, time.monotonic() + 600))
    assert set(results) == set(range(len(jobs)))
    for result in results.values():
        assert '"' not in result.text and "\n" not in result.text
        assert complete_sentences(result.text)[0] == result.text and result.complete == bool(result.text)
    for n, job in enumerate(plan.jobs):  # the grammar holds each text to the words of its facts
        written = re.findall(r"[^\W_]+(?:['’][^\W_]+)*", results[n].text.lower())
        assert set(written) <= {w.lower() for w in job.words}, (written, job.words)
    for n, result in results.items():  # (in the order they finished: by job number, not position)
        if n < len(plan.jobs):
            plan.accept(n, result)
    for ev, texts in zip(evidence, plan.texts):
        for text in (texts.explanation, texts.draft):
            assert check.foreign_titles(text, ev.allowed_titles) == [], text
    outcomes = [o for t in plan.texts for o in t.outcomes.values()]
    assert outcomes.count("llm") >= len(outcomes) // 2, [t.rejected for t in plan.texts]  # the model wrote most
    engine.close()


def test_hostile_descriptions_reach_no_text(served):
    """The real model writes texts for items whose descriptions carry injected instructions and
    links (tests/api/test_injection.py's corpus): every text shown is free of links, of words
    addressed to a model and of the system prompt, and most are still the model's."""
    import time

    from agent.catalog import Item
    from agent.pipeline.generation import Evidence, TextPlan, system_prompt
    from agent.pipeline.grounding import GroundingCheck
    from agent.pipeline.text_quality import copied_phrases, has_link, instruction_like
    from tests.api.test_injection import HOSTILE_DESCRIPTIONS

    server, _ = served
    engine = VLLMEngine(server.url)
    items = [
        Item(f"hostile-{n}", f"Hostile Film {n}", text, ("Drama",), 2000 + n)
        for n, text in enumerate(HOSTILE_DESCRIPTIONS)
    ]
    history = [Item("h1", "Quiet Harbour", "", ("Drama",), 1990), Item("h2", "Far Fields", "", ("Drama",), 1995)]
    evidence = [Evidence(it, history) for it in items]
    plan = TextPlan(evidence, GroundingCheck([it.title for it in items + history]), ["Drama", "Comedy"])
    for job, result in engine.complete(plan.jobs, time.monotonic() + 600):
        plan.accept(job, result)
    for texts in plan.texts:
        for text in (texts.explanation, texts.draft):
            assert not has_link(text) and not instruction_like(text), text
            assert not copied_phrases(text, [system_prompt()]), text
    outcomes = [o for t in plan.texts for o in t.outcomes.values()]
    assert outcomes.count("llm") >= len(outcomes) // 2, outcomes
    engine.close()


def test_a_refused_request_is_told_apart_from_a_dead_server(served):
    import time

    from agent.llm.engine import EngineError, EngineRequestError, TextJob

    server, _ = served
    engine = VLLMEngine(server.url)
    too_long = [{"role": "user", "content": "word " * 3000}]  # past --max-model-len 2048
    with pytest.raises(EngineRequestError):
        list(engine.complete([TextJob(too_long, "It", max_tokens=8)], time.monotonic() + 120))
    with pytest.raises(EngineRequestError):
        engine.label_logprobs([too_long], LABELS[:2])
    dead = VLLMEngine(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(EngineError):
        list(dead.complete([TextJob([{"role": "user", "content": "hi"}], "It")], time.monotonic() + 30))
    with pytest.raises(EngineError):
        dead.label_logprobs(conversations()[:1], LABELS)
    engine.close()


def test_abandoned_texts_are_aborted_in_vllm(served):
    """A generation past its deadline, and one whose caller cancels: the requests that had not
    finished never finish (vLLM aborted them; one it ran to its end would count as finished).
    How long vLLM takes to go idle is printed, not asserted: it depends on the machine."""
    import threading
    import time

    from agent.llm.engine import TextJob

    server, _ = served
    engine = VLLMEngine(server.url)
    endless = [{"role": "user", "content": "List five hundred animals, separated by commas, in one sentence."}]
    # 1,500 tokens each: even at 1,000 tokens/s per sequence (far beyond this model on any
    # machine here) none is done 0.4 s after it starts, so the deadline and the cancel find
    # work to abort; without the abort vLLM would run every one of them to its end.
    jobs = [TextJob(endless, "Here they are: cat, dog,", sentences=1, max_tokens=1500) for _ in range(4)]

    def idle() -> float:  # seconds until vLLM runs nothing (bounded only so that a hang fails)
        left = time.monotonic()
        while _vllm_metric(server.url, "vllm:num_requests_running") > 0:
            assert time.monotonic() - left < 600, "vLLM still running the abandoned requests after 600 s"
            time.sleep(0.02)
        return time.monotonic() - left

    def finished() -> float:  # requests vLLM ran to their end (an aborted one is not counted)
        return sum(
            _vllm_metric(server.url, "vllm:request_success_total", finished_reason=r) for r in ("stop", "length")
        )

    for how in ("deadline", "cancel"):
        before = finished()
        cancel = threading.Event()
        if how == "cancel":
            threading.Timer(0.4, cancel.set).start()
        got = list(engine.complete(jobs, time.monotonic() + (0.4 if how == "deadline" else 600), cancel))
        print(f"{how}: {len(got)} of {len(jobs)} finished; vLLM idle {idle():.2f} s later")
        assert len(got) < len(jobs)
        time.sleep(1.0)  # the metrics of the last engine step
        assert finished() - before == len(got)  # the others left without finishing: aborted
    engine.close()


def test_an_adapter_is_loaded_while_serving(served, packaged_model, tmp_path):
    """Runtime LoRA loading (what `muse finetune promote` uses with MUSE_RANK_ENGINE=lora): the
    new adapter becomes a model of the same server and scores labels."""
    server, adapters = served
    engine = VLLMEngine(server.url, adapters)
    folder = random_adapter(packaged_model, tmp_path / "rank-new", layers=[27, 28, 29], seed=7)
    engine.load_adapter("rank-new", folder)
    assert "rank-new" in engine.models()
    scores = np.array(engine.label_logprobs(conversations()[:1], LABELS, "rank-new"))
    assert scores.shape == (1, 20) and np.isfinite(scores).all()
    engine.close()


def test_replicas_spread_calls_and_skip_a_dead_one_until_it_is_back(served):
    """Two replicas: the server itself and the same server through a proxy that the test cuts.
    Calls spread over both; once the proxy is cut, the health check marks that replica down and
    every call is answered by the other; a call that reaches the dead one first is answered too
    (failover). Restored, the replica takes calls again. How soon the health check notices is
    printed (a few 0.2 s intervals here), not asserted."""
    import time

    from agent.llm.engine import TextJob
    from agent.llm.replicas import VLLMReplicas
    from tests.tcp_proxy import TcpProxy

    server, _ = served
    proxy = TcpProxy(server.config.port)
    engine = VLLMReplicas([server.url, proxy.url], interval=0.2)
    convs = conversations()[:1]

    def wait_until(up: bool) -> float:
        start = time.monotonic()
        while engine.status()[1]["up"] != up:
            assert time.monotonic() - start < 120, engine.status()  # bounded so that a hang fails
            time.sleep(0.02)
        return time.monotonic() - start

    want = engine.label_logprobs(convs, LABELS)
    for _ in range(3):
        assert np.allclose(engine.label_logprobs(convs, LABELS), want, atol=1e-4)
    calls = b"POST /v1/chat/completions HTTP/1.1"
    assert proxy.requests(calls) > 0  # the second replica took calls (not only health checks)
    proxy.stop()
    print(f"replica marked down {wait_until(up=False):.2f} s after the cut")
    assert engine.status()[0]["up"]
    assert np.allclose(engine.label_logprobs(convs, LABELS), want, atol=1e-4)
    proxy.start()
    wait_until(up=True)
    taken = proxy.requests(calls)
    for _ in range(3):
        engine.label_logprobs(convs, LABELS)
    assert proxy.requests(calls) > taken  # used again (a kept-alive connection may carry it)
    engine.close()

    # No health thread: the call that finds the dead replica is answered by the other.
    proxy.stop()
    first_dead = VLLMReplicas([proxy.url, server.url], interval=0)
    assert np.allclose(first_dead.label_logprobs(convs, LABELS), want, atol=1e-4)
    assert [r["up"] for r in first_dead.status()] == [False, True]
    first_dead.replicas[0].up = True  # as if the health check had not noticed yet
    jobs = [TextJob([{"role": "user", "content": "Say hello."}], "Hello", max_tokens=8)] * 2
    assert sorted(n for n, _ in first_dead.complete(jobs, time.monotonic() + 120)) == [0, 1]
    assert not first_dead.status()[0]["up"]  # it was tried first, and found dead again
    first_dead.close()


def test_a_text_job_is_written_by_the_adapter_it_names(served):
    """A text adapter rides on vLLM as LoRA by name (the held-out comparison of
    `muse finetune promote-text`): its text keeps the grammar; a name outside the allow-list is
    refused before any request."""
    import dataclasses
    import time

    from agent.catalog import load_file
    from agent.llm.engine import UnknownAdapterError
    from agent.pipeline.generation import Evidence, text_job
    from tests.conftest import DEMO

    server, adapters = served
    engine = VLLMEngine(server.url, adapters)
    item = next(it for it in load_file(DEMO / "demo_items.jsonl").items if it.text)
    job = dataclasses.replace(text_job(Evidence(item, []), "draft"), adapter="rank-test")
    [(n, result)] = list(engine.complete([job], time.monotonic() + 300))
    written = re.findall(r"[^\W_]+(?:['’][^\W_]+)*", result.text.lower())
    assert n == 0 and result.complete and set(written) <= {w.lower() for w in job.words}
    with pytest.raises(UnknownAdapterError):
        list(engine.complete([dataclasses.replace(job, adapter="text-nowhere")], time.monotonic() + 60))
    engine.close()


def test_stop_takes_the_whole_server_down(served):
    """Runs last in this module: it stops the shared server (the fixture's own stop is then a
    no-op) and checks that the API server and its engine processes are all gone."""
    import os

    import httpx

    server, _ = served
    pid = server.process.pid
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/v1/models", timeout=2)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)

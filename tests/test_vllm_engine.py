"""The real vLLM server on CPU (about a minute to start): every label scored, the same ranking as
the in-process engine for the same model, prompt and adapter, and a clean stop."""

from __future__ import annotations

import numpy as np
import pytest

from agent.background_server import free_port
from agent.llm.engine import UnknownAdapterError
from agent.llm.server import ServerConfig, VLLMServer
from agent.llm.transformers_engine import TransformersEngine
from agent.llm.vllm_engine import VLLMEngine
from agent.ranker import LABELS, rank_conversation
from tests.conftest import random_adapter

pytestmark = [pytest.mark.slow, pytest.mark.vllm]


@pytest.fixture(scope="module")
def served(packaged_model, tmp_path_factory):
    """vLLM serving the packaged model in float32 (for exact comparison) plus one adapter on
    the top layers, as the ranker trainer makes them."""
    folder = tmp_path_factory.mktemp("vllm")
    adapters = {"rank-test": random_adapter(packaged_model, folder / "rank-test", layers=list(range(25, 30)))}
    config = ServerConfig(packaged_model, adapters, port=free_port(), dtype="float32",
                          log_file=folder / "vllm.log")
    server = VLLMServer(config).start()
    yield server, adapters
    server.stop()


def conversations():
    history = ["Toy Story (1995)", "Heat (1995)", "Fargo (1996)", "The Matrix (1999)", "Alien (1979)"]
    movies = [f"{t} ({1970 + n})" for n, t in enumerate(
        ["Babe", "Casino", "Clueless", "Rocky", "Jaws", "Brazil", "Vertigo", "Psycho", "Gattaca", "Tron", "Big", "Rushmore", "Memento", "Heat2", "Ronin", "Se7en", "Sneakers", "Twister", "Speed", "Contact"])]
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

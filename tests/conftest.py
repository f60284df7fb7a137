"""Shared fixtures: seeded randomness, temporary stores, the shipped demo catalog; and the rule
that a skip fails the run where every backend must run (``MUSE_TEST_NO_SKIP=1``, which
``make test`` and so CI set)."""

from __future__ import annotations

import os
import random
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from agent.catalog import Interaction, Item

ROOT = Path(__file__).resolve().parents[1]
MOVIELENS = ROOT.parent / "shared" / "data" / "ml-latest-small"
DEMO = ROOT / "agent" / "data"

# The repository ships a promoted text adapter (adapters/promoted_text.json), which a service
# would merge into its checkpoint on start; tests pin the base model unless they name one
# (tests/finetune/test_text_adapter.py merges the shipped one).
os.environ.setdefault("MUSE_TEXT_ADAPTER", "none")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under ``MUSE_TEST_NO_SKIP=1`` a skipped test is reported as failed, with its reason
    (PostgreSQL that cannot start, Chromium or ``../shared/data`` missing): CI must run every
    backend, never read green over tests that did not run. ``make test-quick`` allows skips."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("MUSE_TEST_NO_SKIP") == "1" and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped where every backend must run (MUSE_TEST_NO_SKIP=1): {reason}"


@pytest.fixture
def rng() -> np.random.Generator:
    """Seeded randomness for any test that needs it."""
    random.seed(0)
    return np.random.default_rng(0)


@pytest.fixture
def movielens() -> Path:
    if not (MOVIELENS / "ratings.csv").exists():
        pytest.skip(f"{MOVIELENS} is absent")
    return MOVIELENS


@pytest.fixture
def store(tmp_path):
    from agent.store import SQLiteStore

    s = SQLiteStore(tmp_path / "muse.db")
    yield s
    s.close()


@pytest.fixture(scope="session")
def postgres() -> str:
    """The admin URL of a throw-away PostgreSQL server for this test session (skips, with the
    reason, where none can start)."""
    from tests.postgres_server import PostgresUnavailable, postgres_server

    try:
        with postgres_server() as url:
            yield url
    except PostgresUnavailable as e:
        pytest.skip(f"PostgreSQL cannot start here: {e}")


@pytest.fixture(scope="session")
def encoder():
    from retrieval.embeddings import MiniLMEmbedding

    return MiniLMEmbedding()


@pytest.fixture(scope="session")
def packaged_model() -> Path:
    """The converted SmolLM2 checkpoint (`make setup` creates it)."""
    from agent.llm.model_files import ensure_checkpoint

    return ensure_checkpoint()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, packaged_model) -> Path:
    """A 2-layer random Llama with SmolLM2's tokenizer and chat template: same token ids as the
    real model, a forward pass in milliseconds."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(packaged_model).save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_lora(tiny_model) -> dict:
    """The ``LoRATrainConfig`` knobs of a two-step test run on ``tiny_model``: LoRA r=4 on its
    top layer, batches of 4, a checkpoint every step."""
    return {
        "model_dir": tiny_model,
        "top_layers": 1,
        "lora_r": 4,
        "lora_alpha": 8,
        "batch_size": 4,
        "warmup_steps": 0,
        "max_steps": 2,
        "save_steps": 1,
    }


def random_adapter(model_dir: Path, folder: Path, layers: list[int], r: int = 4, seed: int = 1) -> Path:
    """A LoRA adapter with random (non-zero) weights on ``layers``, saved as a registry entry."""
    import json

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = LoraConfig(
        r=r,
        lora_alpha=2 * r,
        target_modules=["q_proj", "v_proj", "down_proj"],
        layers_to_transform=layers,
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    get_peft_model(model, config).save_pretrained(folder)
    (folder / "manifest.json").write_text(json.dumps({"kind": "ranker", "lora_r": r, "config": {}}))
    return folder


@pytest.fixture(scope="session")
def tiny_registry(tmp_path_factory, tiny_model) -> Path:
    """An adapter registry holding one random ranker adapter for the tiny model."""
    registry = tmp_path_factory.mktemp("adapters")
    random_adapter(tiny_model, registry / "rank-test", layers=[1])
    return registry


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """A data folder holding the shipped demo catalog, ingested and indexed (about 30 s)."""
    from agent.catalog import load_file
    from agent.config import Settings
    from agent.indexing import build_index
    from agent.store import SQLiteStore

    folder = tmp_path_factory.mktemp("demo-data")
    store = SQLiteStore(folder / "muse.db")
    store.upsert_items(load_file(DEMO / "demo_items.jsonl").items)
    store.add_events(load_file(DEMO / "demo_interactions.jsonl").interactions)
    build_index(store, Settings(data_dir=folder))
    store.close()
    return folder


class SwitchableEngine:
    """Wraps an engine, with the failures of a real one on demand. ``mode``:

    - "up": calls go through;
    - "down": calls raise like a dead server (``EngineError``);
    - "refuse": calls raise like a server refusing one request (``EngineRequestError``, a 4xx);
    - "hung": calls block like a server that took the request and never answered, until the
      mode leaves "hung", the caller's deadline passes, or the caller cancels;
    - "texts_hung": only text generation hangs (ranking answers).

    ``busy`` counts the text generations in progress; ``entered`` how many were ever started (a
    poll cannot miss one that started and ended between two looks); ``ended`` records how each
    one ended ("done", "deadline" or "cancelled")."""

    def __init__(self, engine):
        import threading

        self.engine, self.adapters = engine, engine.adapters
        self._released = threading.Event()
        self.busy, self.entered, self.ended = 0, 0, []
        self.mode = "up"

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        self._mode = mode
        if mode in ("hung", "texts_hung"):
            self._released.clear()
        else:
            self._released.set()

    def _gate(self, timeout: float | None = None):
        from agent.llm.engine import EngineError, EngineRequestError

        if self.mode == "down":
            raise EngineError("connection refused (test)")
        if self.mode == "refuse":
            raise EngineRequestError("400: prompt longer than the context (test)")
        if self.mode == "hung" and not self._released.wait(timeout=timeout if timeout is not None else 300):
            raise EngineError(f"no answer within {timeout} s (test)")

    def label_logprobs(self, *args, timeout=None, **kwargs):
        if self.mode != "texts_hung":
            self._gate(timeout)
        return self.engine.label_logprobs(*args, timeout=timeout, **kwargs)

    def generate(self, *args, **kwargs):
        self._gate()
        return self.engine.generate(*args, **kwargs)

    def complete(self, jobs, deadline, cancel=None):
        import time

        self.busy += 1
        self.entered += 1
        ended = "done"
        try:
            if self.mode in ("hung", "texts_hung"):
                while not self._released.wait(0.01):
                    if cancel is not None and cancel.is_set():
                        ended = "cancelled"
                        return
                    if time.monotonic() >= deadline:
                        ended = "deadline"
                        return
            self._gate()
            yield from self.engine.complete(jobs, deadline, cancel)
        finally:
            self.busy -= 1
            self.ended.append(ended)

    def wait_entered(self, entered: int, within: float = 120) -> bool:
        """Until more than ``entered`` text generations have started (False after ``within`` s)."""
        import time

        end = time.monotonic() + within
        while self.entered <= entered and time.monotonic() < end:
            time.sleep(0.01)
        return self.entered > entered

    def wait_ended(self, calls: int, within: float = 120) -> float:
        """Seconds until more than ``calls`` text generations have ended (at most ``within``)."""
        import time

        start = time.monotonic()
        while len(self.ended) <= calls and time.monotonic() - start < within:
            time.sleep(0.02)
        return time.monotonic() - start

    def load_adapter(self, *args, **kwargs):
        self._gate()
        return self.engine.load_adapter(*args, **kwargs)

    def close(self) -> None:
        self.engine.close()


FEEDBACK_ITEMS = [Item(f"c{n}", f"Film number {n}", year=1990 + n) for n in range(25)]


@pytest.fixture
def logged(store):
    """User u1 liked c20-c22 long ago, then was shown c0-c4 (candidates c0-c19) and clicked c1,
    skipped c2, disliked c3 and liked c4. User u2 has too little history."""
    store.upsert_items(FEEDBACK_ITEMS)
    store.add_events(
        [Interaction("u1", f"c{n}", 1000.0 + n, "like") for n in (20, 21, 22)]
        + [Interaction("u2", "c20", 1000.0, "like")]
    )
    candidates = [f"c{n}" for n in range(20)]
    imp = store.add_impression("u1", candidates[:5], [1.0] * 5, "rank-v2", candidates=candidates)
    imp2 = store.add_impression("u2", candidates[:5], [1.0] * 5, "rank-v2", candidates=candidates)
    t = store.impression(imp).created_at + 1
    store.add_events(
        [
            Interaction("u1", "c1", t, "click", impression_id=imp),
            Interaction("u1", "c2", t, "skip", impression_id=imp),
            Interaction("u1", "c3", t, "dislike", impression_id=imp),
            Interaction("u1", "c4", t, "like", impression_id=imp),
            Interaction("u2", "c1", t, "click", impression_id=imp2),
        ]
    )
    return store


@contextmanager
def serve_demo(
    demo_data,
    tiny_model,
    tiny_registry,
    folder: Path,
    deadline_s: float = 12.0,
    retry_after_s: float = 3.0,
    **settings_fields,
):
    """A real Muse service on a copy of the demo data, the tiny model behind a
    ``SwitchableEngine`` and a copy of the tiny adapter registry, over real HTTP on a free port.
    Yields the ``BackgroundServer`` with ``engine``, ``registry``, ``db_path`` and
    ``retry_after`` attached; ``settings_fields`` set other ``Settings`` fields. The deadline
    leaves a wide margin: a request takes ~1.5 s here with the tiny model, and shared CI
    machines are slower at times."""
    import shutil

    from agent.api.app import create_app
    from agent.api.background_server import BackgroundServer
    from agent.config import Settings
    from agent.llm.registry import discover_adapters
    from agent.llm.transformers_engine import TransformersEngine

    data = folder / "data"
    shutil.copytree(demo_data, data)
    registry = shutil.copytree(tiny_registry, folder / "adapters")  # tests add adapters to it
    settings = Settings(
        data_dir=data,
        llm_model=tiny_model,
        adapters_dir=registry,
        rank_adapter="rank-test",
        llm_deadline_s=deadline_s,
        llm_retry_after_s=retry_after_s,
        rank_weight=0.5,
        rank_engine="lora",
        max_body_bytes=50_000,
        **settings_fields,
    )
    engine = SwitchableEngine(TransformersEngine(tiny_model, discover_adapters(tiny_registry), dtype="float32"))
    with BackgroundServer(create_app(settings, engine=engine)) as server:
        server.engine, server.registry, server.db_path = engine, registry, settings.db_path
        server.retry_after = retry_after_s
        yield server

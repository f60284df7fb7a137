"""Shared fixtures: seeded randomness, temporary stores, the shipped demo catalog."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MOVIELENS = ROOT.parent / "shared" / "data" / "ml-latest-small"
DEMO = ROOT / "agent" / "data"


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
def encoder():
    from retrieval.embeddings import MiniLMEmbedding

    return MiniLMEmbedding()

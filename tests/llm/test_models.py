"""The retrieval models on small hand-made data: EASE, the fused space, SASRec's epoch choice."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.ease import fit_ease, svd_factors
from retrieval.history import recency_weights
from retrieval.hybrid import HybridConfig, HybridModel
from retrieval.sasrec import SASRecConfig, SASRecModel
from retrieval.transition import fit_transition, transition_factors, transition_rows


def ring_sequences(rng, users=30, items=12, length=8):
    return [[(s + t) % items for t in range(length)] for s in rng.integers(0, items, users)]


def test_recency_weights_newest_first():
    idx, w = recency_weights([5, 6, 7, 6], window=3, decay=0.5)
    # The window is [6, 7, 6]: the newest 6 has weight 1, 7 has 0.5; the older 6 is dropped.
    assert dict(zip(idx.tolist(), w.tolist())) == {6: 1.0, 7: 0.5}


def test_ease_has_zero_diagonal_and_full_rank_factors_are_exact(rng):
    seqs = ring_sequences(rng)
    weights = fit_ease(seqs, 12, lam=1.0)
    assert np.allclose(np.diag(weights), 0.0)
    factors = svd_factors(weights, rank=12)
    history = [3, 4, 5]
    idx, w = recency_weights(history, factors.window, factors.decay)
    assert np.allclose(factors.user_vector(history) @ factors.right.T, w @ weights[idx], atol=1e-4)
    # Item 6 follows 3,4,5 on the ring: EASE must rank it above an item far from them.
    scores = w @ weights[idx]
    assert scores[6] > scores[10]


def test_fused_query_equals_weighted_standardised_scores(rng):
    seqs = [[f"i{i}" for i in s] for s in ring_sequences(rng)]
    ids = [f"i{i}" for i in range(12)]
    content = rng.normal(size=(12, 8)).astype(np.float32)
    model = HybridModel(ids, HybridConfig(sasrec=False, ease_rank=12, transition_rank=12))
    model.fit(seqs, content)
    model.weights = {"ease": 0.5, "transition": 0.3, "content": 0.2}
    histories = [s[:4] for s in seqs[:5]]
    fused = model.query_vectors(histories) @ model.item_vectors().T
    # By hand: each space's raw scores divided by their standard deviation over items.
    parts = model.user_parts(histories)
    expected = 0
    for name, w in model.weights.items():
        raw = parts[name] @ model.spaces[name].items.T
        expected = expected + w * raw
        # standardised: the per-user standard deviation of raw scores over items is 1
        assert np.allclose(raw.std(axis=1, ddof=1), 1.0, atol=1e-3)
    assert np.allclose(fused, expected, atol=1e-4)


def test_a_saved_model_loads_with_the_same_query_and_item_vectors(rng, tmp_path):
    seqs = [[f"i{i}" for i in s] for s in ring_sequences(rng)]
    ids = [f"i{i}" for i in range(12)]
    content = rng.normal(size=(12, 8)).astype(np.float32)
    model = HybridModel(ids, HybridConfig(sasrec=False, ease_rank=12, transition_rank=6)).fit(seqs, content)
    model.weights = {"ease": 0.4, "transition": 0.4, "content": 0.2}
    model.save(tmp_path / "model")
    loaded = HybridModel.load(tmp_path / "model")
    assert set(loaded.linear) == {"ease", "transition"} and loaded.weights == model.weights
    histories = [s[:5] for s in seqs[:4]]
    assert np.allclose(loaded.query_vectors(histories), model.query_vectors(histories), atol=1e-6)
    assert np.allclose(loaded.item_vectors(), model.item_vectors())


def test_transition_is_the_ridge_solution_and_predicts_the_next_item_on_a_ring(rng):
    seqs = ring_sequences(rng)
    x, targets = transition_rows(seqs, 12, window=3, decay=0.5)
    assert x.shape[0] == sum(len(s) - 1 for s in seqs) == len(targets)
    weights, _ = fit_transition(seqs, 12, lam=2.0, window=3, decay=0.5)
    # By hand: ridge regression as least squares on [X; sqrt(lam) I] against [Y; 0].
    dense, y = x.toarray(), np.eye(12)[targets]
    stacked = np.vstack([dense, np.sqrt(2.0) * np.eye(12)])
    expected = np.linalg.lstsq(stacked, np.vstack([y, np.zeros((12, 12))]), rcond=None)[0]
    assert np.allclose(weights, expected, atol=1e-8)
    # On a ring the item after 3, 4, 5 is always 6: it must come first, and ahead of 2 (the item
    # before the history), which a model of co-occurring sets cannot tell apart by order.
    factors = transition_factors(seqs, 12, lam=2.0, window=3, decay=0.5, rank=12)
    scores = factors.user_vector([3, 4, 5]) @ factors.right.T
    assert int(np.argmax(scores)) == 6 and scores[6] > scores[2]


def test_reduced_rank_transition_keeps_the_fitted_scores_better_than_svd_does(rng):
    # Any rank-r factorisation loses something; the reduced-rank one is optimal for the scores
    # the training rows produce (X B), which is what serving queries look like.
    seqs = [list(rng.permutation(30)[:12]) for _ in range(80)]
    x, _ = transition_rows(seqs, 30, window=5, decay=0.8)
    weights, _ = fit_transition(seqs, 30, lam=1.0, window=5, decay=0.8)
    fitted = x @ weights
    rrr = transition_factors(seqs, 30, lam=1.0, window=5, decay=0.8, rank=8)
    svd = svd_factors(weights, rank=8)
    err_rrr = np.linalg.norm(x @ rrr.left @ rrr.right.T - fitted)
    err_svd = np.linalg.norm(x @ svd.left @ svd.right.T - fitted)
    assert err_rrr < err_svd
    full = transition_factors(seqs, 30, lam=1.0, window=5, decay=0.8, rank=30)
    assert np.allclose(full.left @ full.right.T, weights, atol=1e-4)


@pytest.mark.slow
def test_sasrec_learns_a_ring_and_refit_trains_the_chosen_epochs(rng):
    seqs = ring_sequences(rng, users=40, items=12, length=10)
    hist, targets = [s[:-1] for s in seqs], [s[-1] for s in seqs]
    cfg = SASRecConfig(hidden=16, max_epochs=15, patience=5, dropout=0.1, lr=1e-2)

    def hit_rate(model):
        scores = model.user_vectors(hist) @ model.item_vectors().T
        return float(np.mean(scores.argmax(axis=1) == np.array(targets)))

    model = SASRecModel(12, cfg, seed=0).fit([s[:-1] for s in seqs], hit_rate)
    assert hit_rate(model) > 0.8  # a ring is fully predictable; chance is 1/12
    assert 1 <= model.best_epoch <= len(model.history)
    again = SASRecModel(12, SASRecConfig(**{**cfg.__dict__, "max_epochs": 3}), seed=0).fit(seqs, None)
    assert again.best_epoch == 3 and again.history == []


def test_randomized_svd_matches_exact_on_the_top_singular_values(rng, monkeypatch):
    from retrieval import ease

    low_rank = rng.normal(size=(300, 40)) @ rng.normal(size=(40, 300))
    matrix = low_rank + 0.01 * rng.normal(size=(300, 300))
    exact = np.linalg.svd(matrix, compute_uv=False)[:40]
    monkeypatch.setattr(ease, "EXACT_SVD_MAX", 100)  # force the randomized path
    u, s, vt = ease.truncated_svd(matrix, 40)
    assert u.shape == (300, 40) and vt.shape == (40, 300)
    assert np.allclose(s, exact, rtol=1e-3)
    assert np.linalg.norm(matrix - (u * s) @ vt) / np.linalg.norm(matrix) < 0.01

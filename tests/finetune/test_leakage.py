"""Leakage guards of both training paths, on data that sits on both sides of their cutoffs.

- Ranker SFT (``finetune.rank_sft``): examples come from each user's training sequence, which
  stops before the protocol's validation and test items; ``guard_examples`` refuses any
  example whose answer is one of them.
- ``muse finetune build-data`` at its defaults: the newest 20% of impressions evaluate, and
  no training row may answer with a user's protocol validation or test item.

Each test also breaks the guard on purpose and checks the leak then shows, so a passing test
is not a vacuous one.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from agent.catalog import Interaction, Item
from finetune import feedback_data as fd
from finetune.rank_data import build_examples, guard_examples
from retrieval.hybrid import HybridConfig, HybridModel
from retrieval.split import LeaveOneOut

ITEMS = [Item(f"m{n}", f"Movie {n}", year=1980 + n) for n in range(40)]


def test_ranker_examples_never_answer_with_a_validation_or_test_item(rng):
    # 30 users, 14 timestamped items each: the protocol holds out the last two of each.
    events = []
    for u in range(30):
        start = int(rng.integers(0, 40))
        events += [(f"u{u}", f"m{(start + 3 * t) % 40}", 1000.0 * u + t) for t in range(14)]
    loo = LeaveOneOut.from_events(events)
    held_out = fd.held_out_pairs(loo.sequences)
    assert len(held_out) == 60
    train = loo.train()
    assert all(len(train[u]) == len(loo.sequences[u]) - 2 for u in loo.users)  # both sides of the cut
    model = HybridModel([it.id for it in ITEMS], HybridConfig(sasrec=False, ease_lambda=1.0, ease_rank=40))
    model.fit(list(train.values()), rng.normal(size=(40, 8)).astype(np.float32))
    model.weights = {"sasrec": 0.0, "ease": 1.0, "transition": 0.0, "content": 0.0}

    examples = build_examples(model, train, positions_per_user=16)
    assert examples
    guard_examples(examples, held_out)  # the path rank_sft takes: passes
    assert not {(e.user, e.candidates[e.target]) for e in examples} & held_out

    # A bug that fed whole sequences (validation and test items included) is refused.
    leaky = build_examples(model, loo.sequences, positions_per_user=16)
    assert {(e.user, e.candidates[e.target]) for e in leaky} & held_out, "the probe must contain a leak"
    with pytest.raises(fd.LeakError, match="validation or test item"):
        guard_examples(leaky, held_out)


def _answers(folder, name: str) -> set[tuple[str, str]]:
    """(user, item title) answered by each row of a written SFT file: the label the row
    trains towards, looked up in its own prompt."""
    out = set()
    for line in (folder / name).read_text().splitlines():
        row = json.loads(line)
        prompt, label = row["messages"][-2]["content"], row["messages"][-1]["content"]
        out.add((row["user_id"], re.search(rf"^{label}\. (.+) \(\d{{4}}\)$", prompt, re.MULTILINE)[1]))
    return out


def _log(store) -> set[tuple[str, str]]:
    """Six users, each with four old likes and five impressions answered by a click; user k's
    impressions come later than user k-1's, so the default cutoff (the newest 20% of
    impressions evaluate) falls inside the data. Returns the protocol's held-out pairs."""
    store.upsert_items(ITEMS)
    candidates = [it.id for it in ITEMS[:20]]
    for u in range(6):
        user = f"u{u}"
        store.add_events([Interaction(user, f"m{20 + (u + t) % 20}", 100.0 + t, "like") for t in range(4)])
        for k in range(5):
            shown = candidates[(u + 3 * k) % 15 :][:5]
            at = 10_000.0 + 1_000 * u + 10 * k
            imp = store.add_impression(user, shown, [1.0] * 5, "rank-v2", candidates=candidates, created_at=at)
            store.add_events([Interaction(user, shown[k % 5], at + 1, "click", impression_id=imp)])
    return fd.protocol_held_out(store.events())


def test_build_data_at_its_defaults_trains_on_no_evaluation_item(store, tmp_path, monkeypatch):
    held_out = _log(store)
    report = fd.build_data(store, tmp_path / "data")  # default cutoffs
    cutoff = report["cutoff"]
    times = sorted(i.created_at for i in store.impressions())
    assert times[0] < cutoff <= times[-1]  # impressions on both sides of the time cutoff
    train = _answers(tmp_path / "data", "sft_train.jsonl")
    evaluation = _answers(tmp_path / "data", "sft_eval.jsonl")
    assert train and evaluation
    titles = {it.id: it.title for it in ITEMS}
    held_titles = {(u, titles[i]) for u, i in held_out}
    assert not train & held_titles, "a training row answers with a validation or test item"
    assert report["skipped"]["held_out_item"] > 0  # the data did offer such rows: they were dropped

    # With the guard's held-out set emptied (a bug), the same data leaks, and this test's
    # check above would catch it.
    monkeypatch.setattr(fd, "protocol_held_out", lambda events: set())
    fd.build_data(store, tmp_path / "unguarded")
    assert _answers(tmp_path / "unguarded", "sft_train.jsonl") & held_titles

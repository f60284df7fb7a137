"""The protocol: k-core filter and chronological leave-one-out without leakage."""

import pytest

from retrieval.split import LeaveOneOut, k_core


def test_k_core_iterates_until_stable():
    # Item "x" has 5 users, but user "u5" has only 2 events; dropping u5 leaves "x" with 4,
    # so x must go too, which then leaves u1..u4 with 4 items each -> everything drops.
    events = [(f"u{u}", i, 0.0) for u in range(1, 5) for i in ("a", "b", "c", "d", "x")]
    events += [("u5", "x", 0.0), ("u5", "a", 0.0)]
    assert k_core(events, k=5) == []
    assert len(k_core(events, k=2)) == len(events)


def test_leave_one_out_is_chronological_with_stable_ties():
    events = [("u", "c", 30.0), ("u", "a", 10.0), ("u", "b", 20.0), ("u", "d", 20.0), ("u", "e", 40.0)]
    loo = LeaveOneOut.from_events(events)
    # b and d share a timestamp: input order decides (b came first).
    assert loo.sequences["u"] == ["a", "b", "d", "c", "e"]
    assert loo.train()["u"] == ["a", "b", "d"]
    assert loo.history_and_target("u", "validation") == (["a", "b", "d"], "c")
    assert loo.history_and_target("u", "test") == (["a", "b", "d", "c"], "e")


def test_no_target_leaks_into_training_or_query_history():
    events = [(f"u{u}", f"i{(u * 7 + t) % 13}", float(t)) for u in range(20) for t in range(8)]
    loo = LeaveOneOut.from_events(events)
    train = loo.train()
    for user, seq in loo.sequences.items():
        val_hist, val_target = loo.history_and_target(user, "validation")
        test_hist, test_target = loo.history_and_target(user, "test")
        # The positions of the targets are never in the training part or their own history.
        assert len(train[user]) == len(seq) - 2
        assert seq[-1] == test_target and seq[-2] == val_target
        assert val_hist == train[user] and test_hist == train[user] + [val_target]
        assert len(val_hist) == len(seq) - 2


def test_leave_one_out_needs_three_items():
    with pytest.raises(ValueError, match="fewer than 3"):
        LeaveOneOut.from_events([("u", "a", 1.0), ("u", "b", 2.0)])


def test_unknown_split_is_rejected():
    loo = LeaveOneOut.from_events([("u", i, float(n)) for n, i in enumerate("abc")])
    with pytest.raises(ValueError, match="unknown split"):
        loo.history_and_target("u", "train")

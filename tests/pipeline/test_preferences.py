"""Soft preferences re-weight candidates, worked by hand: z-scored retrieval scores plus the
boost for each candidate the preference admits."""

from __future__ import annotations

from agent.catalog import Item
from agent.pipeline.preferences import prefer
from agent.pipeline.reader import Constraints
from retrieval.retriever import Candidate


def test_prefer_adds_the_boost_to_z_scores_and_reorders():
    items = {
        "a": Item("a", "A", year=1980),
        "b": Item("b", "B", year=1995),
        "c": Item("c", "C", year=2010),
        "d": Item("d", "D", year=1992),
    }
    cands = [Candidate("a", 4.0, "hybrid"), Candidate("b", 3.0, "hybrid"), Candidate("c", 2.0, "hybrid"),
             Candidate("d", 1.0, "hybrid"), Candidate("gone", 0.5, "hybrid")]  # fmt: skip
    nineties = Constraints(year_min=1990, year_max=1999)
    # scores 4, 3, 2, 1: mean 2.5, population std sqrt(1.25) = 1.118: z = 1.342, 0.447, -0.447, -1.342
    out = prefer(cands, items, nineties, boost=1.0)
    # b: 0.447 + 1, d: -1.342 + 1; a and c keep their z
    assert [c.item_id for c in out] == ["b", "a", "d", "c"]
    assert [round(c.score, 3) for c in out] == [1.447, 1.342, -0.342, -0.447]
    assert [c.item_id for c in prefer(cands, items, nineties, boost=0.0)] == ["a", "b", "c", "d"]
    assert [c.item_id for c in prefer(cands, items, nineties, boost=5.0)] == ["b", "d", "a", "c"]
    assert prefer([Candidate("gone", 1.0, "hybrid")], items, nineties) == []

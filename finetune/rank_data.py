"""Ranking examples for LlamaRec-style instruction tuning, built from interaction sequences.

At a position ``p`` of a user's training sequence, the history is ``seq[:p]`` and the answer is
``seq[p]``. The candidates are what the retriever itself returns for that history (top 20,
seen items excluded, in retrieval order), exactly as at inference; a position whose answer is
not among them is skipped, as the ranker never sees such a case either. Only the last few
positions of each sequence are used: recent behaviour is what the ranker is asked about.

The retriever is scored exactly in memory (the same inner product Chroma serves).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agent.pipeline.ranker import CANDIDATES
from retrieval.exact import top_k_unseen
from retrieval.hybrid import HybridModel

MIN_HISTORY = 3  # a position needs this many earlier items to be a training example


@dataclass(frozen=True)
class RankExample:
    user: str
    history: list[str]  # item ids, oldest first
    candidates: list[str]  # item ids, retrieval order
    scores: list[float]  # retrieval scores of the candidates
    target: int  # position of the answer among the candidates


def top_candidates(
    model: HybridModel, histories: Sequence[Sequence[str]], k: int = CANDIDATES, batch: int = 512
) -> list[tuple[list[str], list[float]]]:
    """Exact top-k of the fused retrieval score per history, seen items excluded."""
    items = model.item_vectors()
    out = []
    for start in range(0, len(histories), batch):
        chunk = histories[start : start + batch]
        scores = model.query_vectors(chunk) @ items.T
        for row, history in zip(scores, chunk):
            top = top_k_unseen(row, [model.index[i] for i in history if i in model.index], k)
            out.append(([model.item_ids[i] for i in top], [float(row[i]) for i in top]))
    return out


def build_examples(
    model: HybridModel,
    sequences: dict[str, Sequence[str]],
    positions_per_user: int = 16,
    min_history: int = MIN_HISTORY,
    k: int = CANDIDATES,
) -> list[RankExample]:
    """Examples at the last ``positions_per_user`` positions of every sequence whose answer is
    among the retriever's top ``k``."""
    queries: list[tuple[str, list[str], str]] = []
    for user, seq in sequences.items():
        for p in range(max(min_history, len(seq) - positions_per_user), len(seq)):
            queries.append((user, list(seq[:p]), seq[p]))
    tops = top_candidates(model, [h for _, h, _ in queries], k)
    return [
        RankExample(user, history, ids, scores, ids.index(target))
        for (user, history, target), (ids, scores) in zip(queries, tops)
        if target in ids
    ]


def guard_examples(examples: Sequence[RankExample], held_out: set[tuple[str, str]]) -> None:
    """Raise ``finetune.feedback_data.LeakError`` if any example's answer is a ``(user, item)``
    pair of ``held_out`` (the protocol's validation and test items,
    ``feedback_data.held_out_pairs``): training must never see them."""
    from finetune.feedback_data import LeakError

    for e in examples:
        if (e.user, e.candidates[e.target]) in held_out:
            raise LeakError(
                f"a ranker example of user {e.user!r} answers with validation or test item {e.candidates[e.target]!r}"
            )

"""The LlamaRec evaluation protocol: k-core filter and chronological leave-one-out.

Each user's interactions are ordered by time (ties keep their input order, which for
MovieLens' ratings.csv is movie id order). The last item is the test target, the one before
it the validation target, and everything earlier is training data. Models are fitted on the
training part only; a test query may use the validation item as history (it happened before
the test item), a validation query may not.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

Split = Literal["validation", "test"]


def k_core(events: Sequence[tuple[str, str, float]], k: int = 5) -> list[tuple[str, str, float]]:
    """Drop users and items with fewer than k interactions, repeatedly, until none are left.

    ``events`` are (user, item, timestamp) triples; the survivors keep their input order.
    """
    kept = list(events)
    while True:
        users = Counter(u for u, _, _ in kept)
        items = Counter(i for _, i, _ in kept)
        survivors = [e for e in kept if users[e[0]] >= k and items[e[1]] >= k]
        if len(survivors) == len(kept):
            return kept
        kept = survivors


@dataclass(frozen=True)
class LeaveOneOut:
    """Chronological sequences per user, cut into train / validation / test."""

    sequences: dict[str, list[str]]  # user -> items in time order

    @classmethod
    def from_events(cls, events: Iterable[tuple[str, str, float]]) -> LeaveOneOut:
        by_user: dict[str, list[tuple[float, int, str]]] = {}
        for position, (user, item, ts) in enumerate(events):
            by_user.setdefault(user, []).append((ts, position, item))
        sequences = {u: [item for _, _, item in sorted(rows)] for u, rows in by_user.items()}
        short = [u for u, seq in sequences.items() if len(seq) < 3]
        if short:
            raise ValueError(
                f"{len(short)} users have fewer than 3 interactions (e.g. {short[0]!r}); "
                "leave-one-out needs train, validation and test items: apply k_core first"
            )
        return cls(sequences)

    @property
    def users(self) -> list[str]:
        return list(self.sequences)

    @property
    def items(self) -> list[str]:
        return sorted({i for seq in self.sequences.values() for i in seq})

    def train(self) -> dict[str, list[str]]:
        """The training part of every sequence: all but the last two items."""
        return {u: seq[:-2] for u, seq in self.sequences.items()}

    def history_and_target(self, user: str, split: Split) -> tuple[list[str], str]:
        """What a model may see when predicting ``split``'s target for ``user``, and the target."""
        seq = self.sequences[user]
        if split == "validation":
            return seq[:-2], seq[-2]
        if split == "test":
            return seq[:-1], seq[-1]
        raise ValueError(f"unknown split {split!r}: expected 'validation' or 'test'")

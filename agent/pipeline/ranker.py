"""The LLM ranker: one forward pass scores every candidate through its index label.

The prompt lists the user's recent history and the candidates under labels A, B, C, ... in
retrieval order. The engine returns the log-probability of each label as the answer's first
token; a softmax over the labels alone gives the LLM's distribution over the candidates. That
score is fused with the retrieval score (both standardised per request), with the fusion
weight chosen on validation: weight 0 is exactly retrieval order, so a ranking chosen this way
is never worse than retrieval order on the data that chose it.

The verbalizer (one label token per candidate, scored in one forward pass) follows LlamaRec:
Yue et al., "LlamaRec: Two-Stage Recommendation using Large Language Models for Ranking",
PGAI@CIKM 2023.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.catalog import Item, metadata_entries
from agent.llm.engine import Engine, Message
from agent.llm.registry import read_manifest
from agent.pipeline.prompts import render

CANDIDATES = 20  # what retrieval hands the ranker, one label letter each (LlamaRec's 20)
LABELS = tuple(string.ascii_uppercase[:CANDIDATES])


@dataclass(frozen=True)
class PromptConfig:
    history_items: int = 8  # most recent history items shown
    title_chars: int = 28  # titles are cut to this many characters (the year is kept apart)


def shorten(title: str, limit: int) -> str:
    return title if len(title) <= limit else title[: limit - 1].rstrip() + "…"


def prompt_config_of(adapter_dir: Path | None) -> PromptConfig:
    """The prompt settings an adapter was trained with (its manifest); the defaults for the base
    model or an adapter without a manifest."""
    cfg = read_manifest(adapter_dir).get("config", {}) if adapter_dir else {}
    defaults = PromptConfig()
    return PromptConfig(
        int(cfg.get("history_items", defaults.history_items)), int(cfg.get("title_chars", defaults.title_chars))
    )


def display_title(item: Item, limit: int) -> str:
    """What the prompt shows for an item: its (shortened) title and year."""
    title = shorten(item.title, limit)
    return f"{title} ({item.year})" if item.year else title


def candidate_facts(item: Item, limit: int, words: int = 12, names: int = 2) -> str:
    """What the conversation-aware prompt shows for a candidate, one line: its display title
    (cut to ``limit`` characters), categories, metadata values (a list field, such as the
    credits ``muse ingest --facts`` joins, by its first ``names`` entries) and the first
    ``words`` words of its description, joined by " · "."""
    facts = [display_title(item, limit)]
    if item.categories:
        facts.append("/".join(item.categories))
    for key, value in sorted((item.metadata or {}).items()):
        if isinstance(value, (str, int, float)):
            facts.append(f"{key} {value}")
        elif isinstance(value, (list, tuple)) and value:
            facts.append(f"{key} {', '.join(str(v) for v in value[:names])}")
    if item.text:
        facts.append(" ".join(item.text.split()[:words]))
    return " · ".join(facts)


def shared_facts(item: Item, liked: Sequence[Item], names: int = 2) -> str:
    """What a candidate has in common with the films a person said they liked, as the
    conversation-aware prompt says it: its categories that any of them has (the most shared
    first, "/"-joined), then per metadata field its values that any of them has (a list field's
    entries, a text field's value; at most ``names`` a field), "; "-joined, e.g. "Crime/Drama;
    cast Tom Hanks". "nothing" when nothing is shared; "" without liked films. The counting a
    small model cannot do over a long prompt, done for it: the overlaps it is to weigh."""
    if not liked:
        return ""
    counts = Counter(c for it in liked for c in it.categories)
    categories = sorted((c for c in item.categories if counts[c]), key=lambda c: -counts[c])
    parts = ["/".join(categories)] if categories else []
    for key, value in sorted((item.metadata or {}).items()):
        theirs = {v for it in liked for v in metadata_entries((it.metadata or {}).get(key))}
        common = [v for v in metadata_entries(value) if v in theirs][:names]
        if common:
            parts.append(f"{key} {', '.join(map(str, common))}")
    return "; ".join(parts) or "nothing"


def rank_conversation(
    history: Sequence[str],
    candidates: Sequence[str],
    config: PromptConfig = PromptConfig(),
    request: str | None = None,
) -> list[Message]:
    """The chat messages of one ranking request (display titles, most recent history last).
    ``request``: what the person asked for in a chat, in their words and as read; the
    candidates are then lines of facts (``candidate_facts``) and the question is which fits
    the request (``rank_chat_user.jinja``). Raises ``ValueError`` for 0 or more than 20
    candidates."""
    if not 1 <= len(candidates) <= len(LABELS):
        raise ValueError(f"the ranker takes 1 to {len(LABELS)} candidates, got {len(candidates)}")
    recent = list(history[-config.history_items :])
    labelled = [(LABELS[n], title) for n, title in enumerate(candidates)]
    if request is not None:
        user = render("rank_chat_user.jinja", history=recent, candidates=labelled, request=request)
    else:
        user = render("rank_user.jinja", history=recent, candidates=labelled)
    return [{"role": "system", "content": render("rank_system.jinja")}, {"role": "user", "content": user}]


def label_distribution(logprobs: Sequence[float]) -> np.ndarray:
    """Full-vocabulary label log-probabilities -> log-softmax over the labels alone."""
    x = np.asarray(logprobs, dtype=np.float64)
    return x - np.logaddexp.reduce(x)


def standardize(x: Sequence[float]) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    std = x.std()
    return (x - x.mean()) / std if std > 1e-12 else np.zeros_like(x)


def fuse(retrieval: Sequence[float], llm: Sequence[float], weight: float) -> np.ndarray:
    """``(1 - weight) * z(retrieval) + weight * z(llm)``; weight 0 is retrieval order."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"fusion weight must lie in [0, 1], got {weight}")
    return (1 - weight) * standardize(retrieval) + weight * standardize(llm)


def order(scores: Sequence[float]) -> list[int]:
    """Candidate positions, best first; ties keep retrieval order (a stable sort)."""
    return [int(i) for i in np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")]


# The fusion weights a search tries: 0 (retrieval order) to 1 (the LLM's order) in steps of 0.05.
WEIGHT_GRID = tuple(round(0.05 * i, 2) for i in range(21))


def best_weight(metric: Callable[[float], float | tuple], weights: Iterable[float] = WEIGHT_GRID) -> float:
    """The one fusion-weight search: the weight of ``weights`` whose ``metric(weight)`` (a number,
    or a tuple compared in order) is highest; a tie goes to the smaller weight, nearer
    retrieval order. Used wherever a weight is chosen (the rerank eval, the chat eval, the
    ranker trainer's held-out report)."""
    return float(max(weights, key=lambda w: (metric(w), -w)))


@dataclass
class RankRequest:
    history: Sequence[str]  # display titles, oldest first
    candidates: Sequence[str]  # display titles (or fact lines with a request), in retrieval order
    retrieval_scores: Sequence[float]
    request: str | None = None  # a chat's request, in words (``rank_conversation``)

    @classmethod
    def of(
        cls,
        history: Sequence[str],
        candidates: Sequence[str],
        scores: Sequence[float],
        items: dict[str, Item],
        prompt: PromptConfig,
    ) -> RankRequest:
        """From item ids (history oldest first, candidates in retrieval order)."""
        return cls(
            [display_title(items[i], prompt.title_chars) for i in history[-prompt.history_items :]],
            [display_title(items[i], prompt.title_chars) for i in candidates],
            list(scores),
        )

    @classmethod
    def for_chat(
        cls, request: str, candidates: Sequence[Item], scores: Sequence[float], liked: Sequence[Item] = ()
    ) -> RankRequest:
        """A conversation-aware request (``rank_chat_user.jinja``): the person's words, the facts
        of the films they said they liked (or watched; the last ``PromptConfig.history_items``)
        and each candidate's facts (``candidate_facts``, titles cut to ``CHAT_TITLE_CHARS``) with
        what it shares with those films (``shared_facts``), in retrieval order. The one
        definition the eval and the trainer share."""
        history = [candidate_facts(it, CHAT_TITLE_CHARS) for it in liked]
        lines = []
        for it in candidates:
            shared = shared_facts(it, liked)
            lines.append(candidate_facts(it, CHAT_TITLE_CHARS) + (f" · in common: {shared}" if shared else ""))
        return cls(history, lines, list(scores), request)


CHAT_TITLE_CHARS = 40  # a candidate's title in the conversation-aware prompt


class Ranker:
    def __init__(
        self, engine: Engine, adapter: str | None = None, weight: float = 1.0, prompt: PromptConfig = PromptConfig()
    ):
        self.engine, self.adapter, self.weight, self.prompt = engine, adapter, weight, prompt

    def llm_scores(self, requests: Sequence[RankRequest], timeout: float | None = None) -> list[np.ndarray]:
        """The LLM's log-distribution over each request's candidates (one pass per request),
        from this ranker's adapter (``None``: the base model). ``timeout``: seconds per engine
        request (the engine drops a request past it and raises ``EngineError``)."""
        conversations = [rank_conversation(r.history, r.candidates, self.prompt, r.request) for r in requests]
        by_size: dict[int, list[int]] = {}
        for n, r in enumerate(requests):
            by_size.setdefault(len(r.candidates), []).append(n)
        out: list[np.ndarray] = [np.empty(0)] * len(requests)
        for size, rows in by_size.items():  # one engine call per label set
            got = self.engine.label_logprobs(
                [conversations[n] for n in rows], LABELS[:size], self.adapter, timeout=timeout
            )
            for n, lp in zip(rows, got):
                out[n] = label_distribution(lp)
        return out

    def rank(self, requests: Sequence[RankRequest]) -> list[list[int]]:
        """A permutation of each request's candidates, best first."""
        if self.weight == 0.0:
            return [order(r.retrieval_scores) for r in requests]
        llm = self.llm_scores(requests)
        return [order(fuse(r.retrieval_scores, s, self.weight)) for r, s in zip(requests, llm)]

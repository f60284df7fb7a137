"""The agent: one request in, ranked and explained recommendations out.

    history (+ items the conversation points at) -> Chroma candidates (20)
      -> LLM label scores fused with retrieval scores -> MMR diversity -> top k
      -> explanation + draft per item (grounding-checked) -> impression logged

Every LLM call goes through ``LLMGate``: it runs under the request's deadline, and when the LLM
fails or is too slow the answer comes from retrieval order with template texts and
``degraded=True``. After a failure the gate skips the LLM for ``retry_after`` seconds, then
tries it again, so the service recovers by itself when the LLM is back.

Domain errors (``UnknownAdapterError``, ``UnknownItemError``, ``ValueError``) are raised from
here; only the HTTP edge (``agent.app``) turns them into status codes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from agent.ab import arm_of
from agent.catalog import Interaction, Item
from agent.config import Settings
from agent.diversity import mmr
from agent.generation import Evidence, Texts, template_texts, text_conversations, write_texts
from agent.grounding import GroundingCheck
from agent.indexing import history_of
from agent.intent import Intent, parse_intent
from agent.llm.engine import Engine, check_adapter
from agent.observability import Metrics
from agent.ranker import PromptConfig, Ranker, RankRequest, fuse, prompt_config_of, standardize
from agent.store import EventStore
from retrieval.index import Filters
from retrieval.retriever import Retriever

CANDIDATES = 20  # what the ranker orders (LlamaRec's 20)
EVIDENCE_ITEMS = 2  # history items cited per explanation
HISTORY_SCANNED = 50  # recent history items searched for evidence
INTENT_CACHE = 1024  # LLM intent readings kept
INTENT_TOKENS = 96  # a reading is ~40 tokens of JSON

T = TypeVar("T")


class LLMUnavailable(RuntimeError):
    """The LLM is down, failed, or did not answer within the deadline."""


class LLMGate:
    """Engine calls under a deadline, with a cool-down after a failure."""

    def __init__(self, engine: Engine | None, retry_after: float = 5.0, workers: int = 4):
        self.engine, self.retry_after = engine, retry_after
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="llm")
        self._down_until = 0.0
        self._lock = threading.Lock()

    def available(self) -> bool:
        return self.engine is not None and time.monotonic() >= self._down_until

    def run(self, call: Callable[[Engine], T], timeout: float) -> T:
        if not self.available():
            raise LLMUnavailable("LLM marked down; retrying after the cool-down")
        if timeout <= 0:
            raise LLMUnavailable("deadline already spent")
        future = self._pool.submit(call, self.engine)
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            self._mark_down()
            raise LLMUnavailable(f"no answer within {timeout:.1f} s") from None
        except Exception as e:
            self._mark_down()
            raise LLMUnavailable(str(e)) from e

    def _mark_down(self) -> None:
        with self._lock:
            self._down_until = time.monotonic() + self.retry_after

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class Ask:
    """What to recommend."""

    user_id: str
    k: int = 10
    query: str | None = None
    filters: Filters = field(default_factory=Filters)
    diversity: float = 0.0
    adapter: str | None = None  # ranker adapter by name; None = the configured one
    like_ids: list[str] = field(default_factory=list)  # items to find more like (newest last)


@dataclass
class Pick:
    item: Item
    score: float
    explanation: str
    draft: str
    text_outcomes: dict[str, str]


@dataclass
class Answer:
    user_id: str
    picks: list[Pick]
    candidate_ids: list[str]
    impression_id: str
    adapter: str | None  # the ranker adapter that ordered the candidates; None = retrieval order
    degraded: bool
    seconds: float


def shown_texts(evidence: Sequence[Evidence], picks: Sequence[Pick]) -> dict:
    """Each pick's explanation and draft with the prompt that asked for it (what a rating of
    the text trains on)."""
    out = {}
    for ev, pick in zip(evidence, picks):
        explain, draft = text_conversations(ev)
        out[pick.item.id] = {
            "explanation": {"prompt": explain, "text": pick.explanation, "source": pick.text_outcomes["explanation"]},
            "draft": {"prompt": draft, "text": pick.draft, "source": pick.text_outcomes["draft"]},
        }
    return out


class MuseAgent:
    def __init__(self, settings: Settings, store: EventStore, retriever: Retriever, engine: Engine | None,
                 metrics: Metrics | None = None):
        self.settings, self.store, self.retriever = settings, store, retriever
        self.metrics = metrics or Metrics()
        self.gate = LLMGate(engine, settings.llm_retry_after_s)
        self.adapters = settings.adapters()
        self.default_adapter = settings.ranker_adapter()
        self.ab_arms = settings.ab_arms()
        self._prompts: dict[str | None, PromptConfig] = {}
        self._intents: dict[str, Intent] = {}  # LLM readings by request text, oldest first
        items = store.items()
        self.categories = sorted({c for it in items for c in it.categories})
        self.grounding = GroundingCheck(it.title for it in items)

    def serve_adapter(self, name: str, split: bool = False) -> dict:
        """Send traffic to a (newly promoted) ranker adapter, or split users between it and the
        current one by the A/B hash. An adapter the engine does not have yet is loaded into
        it while serving (vLLM's runtime LoRA loading): no restart."""
        registered = self.settings.adapters()  # the registry as it is now, not as at start-up
        check_adapter(name, registered)
        engine = self.gate.engine
        if engine is None:
            raise LLMUnavailable("this service runs without an LLM engine")
        loaded = name not in engine.adapters
        if loaded:
            engine.load_adapter(name, registered[name])
        self.adapters[name] = registered[name]
        previous = self.default_adapter
        if split and previous and previous != name:
            self.ab_arms = [previous, name]
        else:
            self.default_adapter, self.ab_arms = name, []
        return {"serving": name, "previous": previous, "loaded_at_runtime": loaded, "ab_arms": list(self.ab_arms)}

    # ------------------------------------------------------------ recommendations

    def recommend(self, ask: Ask) -> Answer:
        started = time.monotonic()
        deadline = started + self.settings.llm_deadline_s
        adapter = ask.adapter
        if adapter is None:  # the A/B arm of this user, else the configured ranker
            adapter = arm_of(ask.user_id, self.ab_arms, self.settings.ab_salt) if self.ab_arms else self.default_adapter
        check_adapter(adapter, self.adapters)
        history = history_of(self.store, ask.user_id)
        seeds = [i for i in ask.like_ids if i not in history]
        context = history + seeds  # "more like X": X joins the history as the newest item
        candidates = self.retriever.retrieve(context, CANDIDATES, ask.filters, ask.query)
        ids = [c.item_id for c in candidates]
        items = {it.id: it for it in self.store.get_items(list(dict.fromkeys(ids + context[-HISTORY_SCANNED:])))}
        recent = [h for h in context[-HISTORY_SCANNED:] if h in items]  # evidence candidates
        rank_failed = False
        scores, ranked_by = standardize([c.score for c in candidates]) if ids else np.empty(0), None
        if ids and adapter is not None and self.settings.rank_weight > 0:
            try:
                scores = self._llm_rank(adapter, context, ids, [c.score for c in candidates], items, deadline)
                ranked_by = adapter
            except LLMUnavailable:
                rank_failed = True
                self.metrics.llm_failures.labels("rank").inc()
        vectors = self.retriever.index.content_vectors(ids + recent)
        picked = mmr(scores, vectors[: len(ids)], ask.k, ask.diversity) if ids else []
        evidence = [self._evidence(items[ids[p]], vectors[p], recent, vectors[len(ids):], items) for p in picked]
        texts, texts_failed = self._texts(evidence, deadline)
        picks = [Pick(items[ids[p]], round(float(scores[p]), 4), t.explanation, t.draft, t.outcomes)
                 for p, t in zip(picked, texts)]
        impression = self.store.add_impression(ask.user_id, [p.item.id for p in picks], [p.score for p in picks],
                                               ranked_by or "retrieval", candidates=ids,
                                               texts=shown_texts(evidence, picks))
        degraded = rank_failed or texts_failed
        self.metrics.recommendations.labels("degraded" if degraded else "llm").inc()
        return Answer(ask.user_id, picks, ids, impression, ranked_by, degraded, round(time.monotonic() - started, 3))

    def _llm_rank(self, adapter: str, context: list[str], ids: list[str], retrieval: list[float],
                  items: dict[str, Item], deadline: float) -> np.ndarray:
        prompt = self._prompt(adapter)
        request = RankRequest.of([h for h in context if h in items], ids, retrieval, items, prompt)

        def score(engine: Engine) -> np.ndarray:
            return Ranker(engine, adapter, self.settings.rank_weight, prompt).llm_scores([request])[0]

        llm = self.gate.run(score, deadline - time.monotonic())
        return fuse(retrieval, llm, self.settings.rank_weight)

    def _prompt(self, adapter: str) -> PromptConfig:
        if adapter not in self._prompts:
            self._prompts[adapter] = prompt_config_of(self.adapters.get(adapter))
        return self._prompts[adapter]

    def _evidence(self, item: Item, vector: np.ndarray, recent: list[str], history_vectors: np.ndarray,
                  items: dict[str, Item]) -> Evidence:
        """``recent``: the history items that may be cited, ``history_vectors`` their content vectors."""
        if not recent:
            return Evidence(item, [])
        sims = history_vectors @ vector
        best = np.argsort(-sims, kind="stable")[:EVIDENCE_ITEMS]
        return Evidence(item, [items[recent[b]] for b in best])

    def _texts(self, evidence: Sequence[Evidence], deadline: float) -> tuple[list[Texts], bool]:
        """The texts, and whether the LLM failed them (marked down, errored, or past the deadline)."""
        if not evidence or not self.gate.available():
            return self._count(template_texts(evidence)), bool(evidence) and self.gate.engine is not None

        def generate(conversations, max_tokens, temperature):
            return self.gate.run(lambda e: e.generate(conversations, max_tokens, None, temperature),
                                 deadline - time.monotonic())

        try:
            return self._count(write_texts(evidence, generate, self.grounding)), False
        except LLMUnavailable:
            self.metrics.llm_failures.labels("generate").inc()
            return self._count(template_texts(evidence)), True

    def _count(self, texts: list[Texts]) -> list[Texts]:
        for t in texts:
            for kind, outcome in t.outcomes.items():
                self.metrics.texts.labels(kind, outcome).inc()
            for kind, reason in t.first_try_failures.items():
                self.metrics.grounding_failures.labels(kind, reason.split(":")[0]).inc()
        return texts

    # ------------------------------------------------------------ intent

    def interpret(self, text: str, deadline: float | None = None) -> Intent:
        """Filters and query text from a natural-language request (LLM, else rules)."""
        if text in self._intents:  # earlier turns of a conversation come back with every turn
            return self._intents[text]
        ask = None
        if self.gate.available():
            budget = (deadline or time.monotonic() + self.settings.llm_deadline_s) - time.monotonic()

            def ask(conversation, schema):
                return self.gate.run(lambda e: e.generate([conversation], INTENT_TOKENS, None, 0.0, schema)[0],
                                     budget)
        intent = parse_intent(text, self.categories, ask)
        self.metrics.intents.labels(intent.source).inc()
        if intent.source == "llm":
            if len(self._intents) >= INTENT_CACHE:
                self._intents.pop(next(iter(self._intents)))
            self._intents[text] = intent
        return intent

    # ------------------------------------------------------------ catalog, events, users

    def add_feedback(self, events: Sequence[Interaction]) -> tuple[int, int]:
        """(new, already stored); all-or-nothing."""
        new = self.store.add_events(events)
        self.metrics.feedback.labels("new").inc(new)
        self.metrics.feedback.labels("duplicate").inc(len(events) - new)
        return new, len(events) - new

    def upsert_items(self, items: Sequence[Item]) -> dict[str, int]:
        changed = self.store.upsert_items(items)
        embedded = self.retriever.upsert_items(items)
        self.grounding.add(it.title for it in items)
        self.categories = sorted(set(self.categories) | {c for it in items for c in it.categories})
        return {"upserted": changed, "embedded": embedded}

    def history(self, user_id: str) -> list[Interaction]:
        return self.store.history(user_id)

    def forget(self, user_id: str) -> dict[str, int]:
        return self.store.forget_user(user_id)

    def close(self) -> None:
        self.gate.close()

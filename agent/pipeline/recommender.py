"""The agent: one request in, ranked and explained recommendations out.

    history (+ items the conversation points at) -> Chroma candidates (20)
      -> [LLM label scores fused with retrieval scores, when the adapter's validated weight > 0]
      -> MMR diversity -> top k                                   (``plan``: the picks, ~0.1-1 s)
      -> explanation + draft per pick, one batched generation     (``texts``: yielded as written)
      -> impression logged                                        (``finish``)

``recommend`` runs the three in a row; the streaming chat endpoint sends the picks as soon as
``plan`` returns and each text as ``texts`` yields it.

``MuseAgent`` is the thin recommender over the stage objects, each its own module:

    UserState      (user_state.py)   the user's history, seeds, turned-down: read once per request
    ServedRankers  (rankers.py)      the served ranker adapters, their weights and engines
    CatalogView    (catalog_view.py) categories, titles, and the conversation reader
    TextWriter     (writer.py)       the texts, under the deadline and the admission bound
    LLMGate        (llm_gate.py)     whether to ask the LLM now, what a failure means
    Users          (users.py)        the user operations the routes call

Every LLM step runs under the request's deadline (``MUSE_LLM_DEADLINE_S``). A text the LLM did
not write by then is its template, the answer says ``degraded``, and the engine drops the
unfinished work (as it does when the caller stops reading).

Domain errors (``UnknownAdapterError``, ``UnknownItemError``, ``ValueError``) are raised from
here; only the HTTP edge (``agent.api.app``) turns them into status codes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np

from agent.catalog import Interaction, Item
from agent.config import Settings
from agent.llm.engine import Engine, EngineError, EngineRequestError
from agent.llm.hardware import resolve_in_flight
from agent.observability import Metrics
from agent.pipeline.admission import LLMAdmission
from agent.pipeline.answer import Answer, Ask, Pick, Plan, TextEvent
from agent.pipeline.catalog_view import CatalogView
from agent.pipeline.diversity import mmr
from agent.pipeline.evidence import Evidence, choose_evidence
from agent.pipeline.generation import TextPlan
from agent.pipeline.llm_gate import FAILED_RANKING, LLMGate, LLMUnavailable, RequestCancelled
from agent.pipeline.onboarding import OnboardingPicks
from agent.pipeline.preferences import prefer
from agent.pipeline.ranker import CANDIDATES, standardize
from agent.pipeline.rankers import ServedRankers
from agent.pipeline.user_state import UserState
from agent.pipeline.users import Users
from agent.pipeline.writer import TextWriter
from agent.store import EventStore
from retrieval.retriever import Retriever

__all__ = ["Answer", "Ask", "LLMUnavailable", "MuseAgent", "Pick", "Plan", "RequestCancelled", "TextEvent"]

HISTORY_SCANNED = 50  # recent history items searched for evidence
CONSTRAINED_FETCH = 200  # candidates fetched when constraints are checked on items, before cutting to CANDIDATES


class MuseAgent:
    """The recommender: ``plan`` (retrieve, rank, pick), ``texts`` (written as they finish),
    ``finish`` (the impression logged), over the store, the retriever and the LLM ``engine``
    (None: templates only). The stage objects it holds are its public parts: ``rankers``,
    ``catalog`` (and its ``reader``), ``writer``, ``gate``, ``admission``, ``users``."""

    def __init__(
        self,
        settings: Settings,
        store: EventStore,
        retriever: Retriever,
        engine: Engine | None,
        metrics: Metrics | None = None,
    ):
        self.settings, self.store, self.retriever = settings, store, retriever
        self.metrics = metrics or Metrics()
        self.gate = LLMGate(engine, settings.llm_retry_after_s)
        self.admission = LLMAdmission(resolve_in_flight(settings.llm_max_in_flight))
        self.rankers = ServedRankers(settings, self.gate)
        self.catalog = CatalogView(store, retriever.popular)
        self.reader = self.catalog.reader
        self.writer = TextWriter(self.gate, self.admission, self.metrics, settings.llm_deadline_s)
        self.onboarding_picks = OnboardingPicks(store, settings.onboarding_refresh_s)
        self.users = Users(settings, store, self.onboarding_picks)  # what the user routes call
        self.retrieval_ready = threading.Event()  # the store, the index and the query encoder answered once
        self.warmed = threading.Event()  # every LLM stage in use has answered once
        self.warm_error = ""

    # ------------------------------------------------------------ warm-up

    def warm_up(self, retry_every: float = 5.0, stop: threading.Event | None = None) -> None:
        """Run one retrieval (the query encoder loads on first use) and wait for the first
        onboarding items (then ``retrieval_ready`` is set), and ask every LLM stage in use once
        (texts; each ranker with a positive weight), retrying the LLM until all answer; then
        ``warmed`` is set. ``/readyz`` reads both. A retry reads nothing from the store."""
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                if not self.retrieval_ready.is_set():
                    self.plan(Ask("muse-warm-up", 1, query="warm up"))  # loads the query encoder; logs nothing
                    self.onboarding_picks.get()  # a new user's first answer does not wait for them
                    self.retrieval_ready.set()
                if self.gate.engine is not None and len(self.catalog.warm_items) >= 3:
                    self.writer.warm_up(self.catalog.warm_items, self.catalog.grounding, self.catalog.categories)
                    self.rankers.warm_up(self.catalog.warm_items)
                self.warm_error = ""
                self.warmed.set()
                return
            except (EngineError, EngineRequestError, LLMUnavailable, OSError) as e:
                self.warm_error = f"{type(e).__name__}: {e}"[:300]
                stop.wait(retry_every)

    def llm_state(self) -> str:
        """The LLM as ``/readyz`` reports it: ``none`` (served without one), ``warming up``
        (not yet answered its warm-up), ``up``, or ``down`` (in its cool-down after a failure)."""
        if self.gate.engine is None:
            return "none"
        if not self.warmed.is_set():
            return "warming up"
        return "up" if self.gate.available() else "down"

    # ------------------------------------------------------------ recommendations

    def recommend(self, ask: Ask) -> Answer:
        """The whole answer to ``ask``: ``plan`` (candidates, ranking, diversity), every text
        (the LLM's, or its template when the LLM fails or the deadline passes), then ``finish``
        (the impression logged). ``Answer.picks`` holds at most ``ask.k`` items, none from the
        user's history or turned down; an empty list comes with ``Answer.reason``. Raises
        ``UnknownAdapterError`` for an adapter outside the registry and ``ValueError`` for
        ``k`` < 1. The HTTP routes call ``plan``, ``texts`` and ``finish`` themselves so they
        can stream and cancel; this is the same flow in one call (CLI, tests)."""
        plan = self.plan(ask)
        for _ in self.texts(plan):
            pass
        return self.finish(plan)

    def plan(self, ask: Ask) -> Plan:
        """Retrieve, rank (when the adapter's weight is positive) and pick; no texts yet.
        Raises ``UnknownAdapterError`` and ``ValueError`` for bad asks."""
        started = time.monotonic()
        deadline = started + self.settings.llm_deadline_s
        adapter = self.rankers.choose(ask.user_id, ask.adapter)
        user = UserState.load(self.store, ask)
        context = user.context  # "more like X": X joins the history as the newest item
        constrained = ask.constraints is not None and ask.constraints.needs_items()
        fetch = max(CONSTRAINED_FETCH if constrained or ask.preferences is not None else CANDIDATES, ask.depth)
        candidates = self.retriever.retrieve(context, fetch, ask.filters, ask.query, disliked=user.disliked)
        wanted = [c.item_id for c in candidates] + context[-HISTORY_SCANNED:]
        items = {it.id: it for it in self.store.get_items(list(dict.fromkeys(wanted)))}
        if constrained:
            candidates = [c for c in candidates if c.item_id in items and ask.constraints.admits(items[c.item_id])]
        if ask.preferences is not None:
            candidates = prefer(candidates, items, ask.preferences)
        candidates = candidates[: ask.depth]
        ids = [c.item_id for c in candidates]
        scores, ranked_by, degraded = standardize([c.score for c in candidates]) if ids else np.empty(0), None, None
        if ids and self.rankers.weight(adapter) > 0 and self.gate.available():
            try:
                scores = self.rankers.scores(adapter, context, ids, [c.score for c in candidates], items, deadline)
                ranked_by = adapter
            except (EngineError, EngineRequestError) as e:
                self.gate.failed(e)
                degraded = FAILED_RANKING
                self.metrics.llm_failures.labels("rank").inc()
        elif ids and self.rankers.weight(adapter) > 0:
            degraded = self.gate.unavailable_reason()  # the ranker is in use but the LLM is not
        recent = [h for h in context[-HISTORY_SCANNED:] if h in items]  # evidence candidates
        vectors = self.retriever.index.content_vectors(ids + recent)
        picked = mmr(scores, vectors[: len(ids)], ask.k, ask.diversity) if ids else []
        evidence = self._evidence(picked, candidates, items, recent, vectors, user.came_in)
        return Plan(
            ask,
            [items[ids[p]] for p in picked],
            [round(float(scores[p]), 4) for p in picked],
            ids,
            ranked_by,
            TextPlan(evidence, self.catalog.grounding, self.catalog.categories),
            started,
            deadline,
            degraded is not None,
            reason=None if ids else self.catalog.nothing_matches(ask.filters),
            history=user.history,
            degraded_reason=degraded,
        )

    @staticmethod
    def _evidence(picked, candidates, items, recent, vectors, came_in) -> list[Evidence]:
        """Each pick with the history items its explanation may cite (the closest of ``recent``
        by content vector, ``vectors`` = candidates' rows then ``recent`` 's). Every cited item
        says how it came in (``came_in``), so nothing is called watched that was not."""
        history_vectors = vectors[len(candidates) :]
        unit = history_vectors / np.maximum(np.linalg.norm(history_vectors, axis=1, keepdims=True), 1e-12)
        out = []
        for p in picked:
            item = items[candidates[p].item_id]
            v = vectors[p] / max(float(np.linalg.norm(vectors[p])), 1e-12)
            cited = choose_evidence(item, [items[h] for h in recent], unit @ v) if recent else []
            out.append(Evidence(item, cited, candidates[p].source, came_in))
        return out

    def texts(self, plan: Plan, cancel: threading.Event | None = None) -> Iterator[TextEvent]:
        """``TextWriter.texts``: each pick's texts as they are final."""
        return self.writer.texts(plan, cancel)

    def finish(self, plan: Plan) -> Answer:
        """Log the impression (with every shown text and its prompt) and return the answer."""
        picks = [plan.pick(n) for n in range(len(plan.items))]
        texts = {p.item.id: plan.texts.prompts(n) for n, p in enumerate(picks)}
        impression = self.store.add_impression(
            plan.ask.user_id,
            [p.item.id for p in picks],
            [p.score for p in picks],
            plan.ranked_by or "retrieval",
            candidates=plan.candidate_ids,
            texts=texts,
        )
        self.metrics.recommendations.labels("degraded" if plan.degraded else "llm").inc()
        return Answer(
            plan.ask.user_id,
            picks,
            plan.candidate_ids,
            impression,
            plan.ranked_by,
            plan.degraded,
            round(time.monotonic() - plan.started, 3),
            plan.reason,
            plan.texts.prompt_tokens,
            plan.texts.completion_tokens,
            list(plan.ask.notes),
            plan.degraded_reason,
        )

    # ------------------------------------------------------------ catalog, events

    def add_feedback(self, events: Sequence[Interaction]) -> tuple[int, int]:
        """(new, already stored); all-or-nothing."""
        new = self.store.add_events(events)
        self.metrics.feedback.labels("new").inc(new)
        self.metrics.feedback.labels("duplicate").inc(len(events) - new)
        return new, len(events) - new

    def catalog_summary(self) -> tuple[int, list[str], int | None, int | None]:
        """(items, categories, first year, last year) of the catalog; the categories kept
        current as items are added."""
        n, year_min, year_max = self.store.catalog_summary()
        return n, list(self.catalog.categories), year_min, year_max

    def upsert_items(self, items: Sequence[Item]) -> dict[str, int]:
        """Store and embed ``items`` (new or changed); the catalog views and the onboarding
        items follow. Returns ``{"upserted": rows changed, "embedded": vectors written}``."""
        changed = self.store.upsert_items(items)
        embedded = self.retriever.upsert_items(items)
        self.catalog.add(items)
        self.onboarding_picks.refresh()  # new items may belong in the set
        return {"upserted": changed, "embedded": embedded}

    def close(self) -> None:
        self.rankers.close()

"""The agent: one request in, ranked and explained recommendations out.

    history (+ items the conversation points at) -> Chroma candidates (20)
      -> [LLM label scores fused with retrieval scores, when the adapter's validated weight > 0]
      -> MMR diversity -> top k                                   (``plan``: the picks, ~0.1-1 s)
      -> explanation + draft per pick, one batched generation     (``texts``: yielded as written)
      -> impression logged                                        (``finish``)

``recommend`` runs the three in a row; the streaming chat endpoint sends the picks as soon as
``plan`` returns and each text as ``texts`` yields it.

Every LLM step runs under the request's deadline (``MUSE_LLM_DEADLINE_S``). A text the LLM did
not write by then is its template, the answer says ``degraded``, and the engine drops the
unfinished work (as it does when the caller stops reading). ``LLMGate`` decides what a failure
means: an engine failure (unreachable, 5xx, timeout) makes the service skip the LLM for
``MUSE_LLM_RETRY_AFTER_S``, then try again, so it recovers by itself; a request the engine
refused (a 4xx) fails that request's LLM step alone.

Domain errors (``UnknownAdapterError``, ``UnknownItemError``, ``ValueError``) are raised from
here; only the HTTP edge (``agent.api.app``) turns them into status codes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from agent.catalog import Interaction, Item, cited_as, turned_down
from agent.config import Settings
from agent.indexing import user_sequences
from agent.llm import registry
from agent.llm.engine import Engine, EngineError, EngineRequestError
from agent.llm.hardware import resolve_dtype, resolve_in_flight
from agent.llm.model_files import model_path
from agent.llm.registry import check_adapter
from agent.observability import Metrics
from agent.pipeline.ab import arm_of
from agent.pipeline.admission import LLMAdmission
from agent.pipeline.diversity import mmr
from agent.pipeline.generation import KINDS, Evidence, TextPlan, choose_evidence
from agent.pipeline.grounding import GroundingCheck
from agent.pipeline.intent import Intent, parse_intent, rule_intent
from agent.pipeline.onboarding import OnboardingPicks
from agent.pipeline.preferences import prefer
from agent.pipeline.ranker import (
    CANDIDATES,
    PromptConfig,
    Ranker,
    RankRequest,
    fuse,
    prompt_config_of,
    standardize,
)
from agent.pipeline.reader import Constraints, ConversationReader, Vocabulary
from agent.pipeline.users import Users
from agent.store import EventStore
from retrieval.index import Filters
from retrieval.retriever import Retriever

HISTORY_SCANNED = 50  # recent history items searched for evidence
CONSTRAINED_FETCH = 200  # candidates fetched when constraints are checked on items, before cutting to CANDIDATES
INTENT_CACHE = 1024  # LLM intent readings kept
INTENT_TOKENS = 96  # a reading is ~40 tokens of JSON


# Why an answer is degraded, as its ``degraded_reason`` says (with LLMAdmission.busy_reason and
# the deadline's, which carry numbers).
DOWN = "the language model is unavailable (it failed a moment ago and is retried after a pause)"
NO_LLM = "this service runs without a language model"
FAILED_RANKING = "the language model failed while ranking"
FAILED_WRITING = "the language model failed while writing"


class LLMUnavailable(RuntimeError):
    """The LLM is down, failed, or did not answer within the deadline."""


class RequestCancelled(RuntimeError):
    """The caller went away before the answer was complete (nothing is logged)."""


class LLMGate:
    """Whether to ask the LLM now, and what a failure means: an engine failure (``EngineError``,
    a timeout) marks the engine down for ``retry_after`` seconds; a request the engine refused
    (``EngineRequestError``) does not."""

    def __init__(self, engine: Engine | None, retry_after: float = 5.0):
        self.engine, self.retry_after = engine, retry_after
        self._down_until = 0.0
        self._lock = threading.Lock()

    def available(self) -> bool:
        return self.engine is not None and time.monotonic() >= self._down_until

    def failed(self, error: BaseException) -> None:
        """Record a failed LLM call; only engine failures start the cool-down."""
        if isinstance(error, EngineRequestError):
            return
        with self._lock:
            self._down_until = time.monotonic() + self.retry_after


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
    # From the conversation reader (agent.pipeline.reader): items the user turned down in words
    # (never shown, pushed away from), constraints checked on items after retrieval, and how each
    # seed outside the stored history came in ("liked": they said so; "asked": they asked for
    # more like it), so an explanation never says "you watched" of it.
    disliked_ids: list[str] = field(default_factory=list)
    constraints: Constraints | None = None
    preferences: Constraints | None = None  # soft: candidates they admit gain PREFERENCE_BOOST
    said: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the reply says it read and could not honour


@dataclass
class Pick:
    item: Item
    score: float
    explanation: str
    draft: str
    text_outcomes: dict[str, str]
    cited: list[Item] = field(default_factory=list)  # the history items its explanation draws on


@dataclass
class Answer:
    user_id: str
    picks: list[Pick]
    candidate_ids: list[str]
    impression_id: str
    adapter: str | None  # the ranker adapter that ordered the candidates; None = retrieval order
    degraded: bool
    seconds: float
    reason: str | None = None  # why there are no picks (None when there are)
    # Tokens the engine read and wrote for this answer's texts (the ranking pass and the
    # intent reading are not counted: the engine interface reports usage for texts only).
    prompt_tokens: int = 0
    completion_tokens: int = 0
    notes: list[str] = field(default_factory=list)  # Ask.notes: what the request was read as
    degraded_reason: str | None = None  # why ``degraded`` (None when it is not)


@dataclass
class TextEvent:
    """One text of one pick, final: written by the LLM (``source`` "llm"), or its template."""

    pick: int
    kind: str  # "explanation" or "draft"
    text: str
    source: str  # "llm", "fallback" or "template"


@dataclass
class Plan:
    """An answer before its texts: the picks in order, with what their texts may cite."""

    ask: Ask
    items: list[Item]
    scores: list[float]
    candidate_ids: list[str]
    ranked_by: str | None
    texts: TextPlan
    started: float
    deadline: float
    degraded: bool = False  # an LLM step failed, ran past the deadline or was not admitted
    texts_done: bool = False
    degraded_reason: str | None = None  # why, in words (the first LLM step that degraded it)
    reason: str | None = None  # why there are no picks (None when there are)
    history: list[str] = field(default_factory=list)  # the user's history (item ids, oldest first)

    def degrade(self, reason: str) -> None:
        """Mark the answer degraded; the first reason is the one it reports."""
        self.degraded = True
        self.degraded_reason = self.degraded_reason or reason

    def pick(self, n: int) -> Pick:
        t = self.texts.texts[n]
        return Pick(
            self.items[n], self.scores[n], t.explanation, t.draft, dict(t.outcomes), self.texts.evidence[n].history
        )


class MuseAgent:
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
        self.adapters = registry.adapters(settings)
        self.default_adapter = registry.ranker_adapter(settings)
        self.ab_arms = registry.ab_arms(settings)
        self._prompts: dict[str | None, PromptConfig] = {}
        self._rankers: dict[str, Engine] = {}  # adapter -> its merged checkpoint, in-process
        self._rankers_lock = threading.Lock()
        self._intents: dict[str, Intent] = {}  # LLM readings by request text, oldest first
        items = store.items()
        self.categories = sorted({c for it in items for c in it.categories})
        self.grounding = GroundingCheck(it.title for it in items)
        self.vocabulary = Vocabulary(items, retriever.popular)
        self.reader = ConversationReader(self.vocabulary, store.get_items)
        self.warm_items = [it for it in items if it.text][:3]  # what the LLM warm-up writes about
        self.onboarding_picks = OnboardingPicks(store, settings.onboarding_refresh_s)
        self.users = Users(settings, store, self.onboarding_picks)  # what the user routes call
        self.retrieval_ready = threading.Event()  # the store, the index and the query encoder answered once
        self.warmed = threading.Event()  # every LLM stage in use has answered once
        self.warm_error = ""

    # ------------------------------------------------------------ rankers

    def ranker_weight(self, adapter: str | None) -> float:
        """The fusion weight served for ``adapter`` (0: retrieval order, no ranking call)."""
        return registry.fusion_weight(self.settings, adapter) if adapter in self.adapters else 0.0

    def rankers_in_use(self) -> list[str]:
        arms = self.ab_arms or ([self.default_adapter] if self.default_adapter else [])
        return [a for a in arms if self.ranker_weight(a) > 0]

    def _rank_engine(self, adapter: str) -> tuple[Engine, str | None]:
        """The engine that scores ``adapter``, and the adapter name to pass it: the vLLM server's
        LoRA adapter, or the adapter's merged checkpoint in-process (loaded on first use)."""
        if self.settings.rank_engine == "lora" and self.gate.engine is not None:
            return self.gate.engine, adapter
        with self._rankers_lock:
            if adapter not in self._rankers:
                from agent.llm.merged import merged_checkpoint
                from agent.llm.transformers_engine import TransformersEngine

                folder = merged_checkpoint(model_path(self.settings), self.adapters[adapter], self.settings.data_dir)
                self._rankers[adapter] = TransformersEngine(folder, dtype=resolve_dtype(self.settings.llm_dtype))
            return self._rankers[adapter], None

    def serve_adapter(self, name: str, split: bool = False) -> dict:
        """Send traffic to a (newly promoted) ranker adapter, or split users between it and the
        current one by the A/B hash. With ``MUSE_RANK_ENGINE=lora`` an adapter the engine does
        not have yet is loaded into it while serving (runtime LoRA loading); otherwise its merged
        checkpoint is loaded in-process. No restart either way."""
        registered = registry.adapters(self.settings)  # the registry as it is now, not as at start-up
        check_adapter(name, registered)
        engine = self.gate.engine
        if engine is None:
            raise LLMUnavailable("this service runs without an LLM engine")
        self.adapters[name] = registered[name]
        if self.settings.rank_engine == "lora":
            loaded = name not in engine.adapters
            if loaded:
                engine.load_adapter(name, registered[name])
        else:
            loaded = name not in self._rankers
            self._rank_engine(name)
        previous = self.default_adapter
        if split and previous and previous != name:
            self.ab_arms = [previous, name]
        else:
            self.default_adapter, self.ab_arms = name, []
        return {"serving": name, "previous": previous, "loaded_at_runtime": loaded, "ab_arms": list(self.ab_arms)}

    # ------------------------------------------------------------ warm-up

    def warm_up(self, retry_every: float = 5.0, stop: threading.Event | None = None) -> None:
        """Run one retrieval (the query encoder loads on first use) and wait for the first
        onboarding items (then ``retrieval_ready`` is set), and ask every LLM stage in use once
        (texts; each ranker with a positive weight), retrying the LLM until all answer; then
        ``warmed`` is set. ``/readyz`` reads both."""
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                if not self.retrieval_ready.is_set():
                    self.plan(Ask("muse-warm-up", 1, query="warm up"))  # loads the query encoder; logs nothing
                    self.onboarding_picks.get()  # a new user's first answer does not wait for them
                    self.retrieval_ready.set()
                self._warm_llm()
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

    def _warm_llm(self) -> None:
        engine = self.gate.engine
        if engine is None:
            return
        items = self.warm_items  # read once: a retry after a failure reads nothing
        if len(items) < 3:
            return
        evidence = [Evidence(items[0], items[1:3])]
        plan = TextPlan(evidence, self.grounding, self.categories)
        deadline = time.monotonic() + max(120.0, self.settings.llm_deadline_s)
        got = list(engine.complete(plan.jobs, deadline))
        if len(got) != len(plan.jobs):
            raise LLMUnavailable("the text warm-up did not finish")
        for adapter in self.rankers_in_use():
            rank_engine, name = self._rank_engine(adapter)
            prompt = self._prompt(adapter)
            request = RankRequest.of(
                [i.id for i in items[:1]], [i.id for i in items[1:3]], [1.0, 0.5], {i.id: i for i in items}, prompt
            )
            Ranker(rank_engine, name, 1.0, prompt).llm_scores([request])

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
        adapter = ask.adapter
        if adapter is None:  # the A/B arm of this user, else the configured ranker
            adapter = (
                arm_of(ask.user_id, self.ab_arms, self.settings.ab_salt) if self.ab_arms else self.default_adapter
            )
        check_adapter(adapter, self.adapters)
        events = self.store.history(ask.user_id)
        history = user_sequences(events).get(ask.user_id, [])
        seeds = [i for i in ask.like_ids if i not in history]
        context = history + seeds  # "more like X": X joins the history as the newest item
        disliked = [i for i in dict.fromkeys(turned_down(events) + ask.disliked_ids) if i not in seeds]
        constrained = ask.constraints is not None and ask.constraints.needs_items()
        fetch = CONSTRAINED_FETCH if constrained or ask.preferences is not None else CANDIDATES
        candidates = self.retriever.retrieve(context, fetch, ask.filters, ask.query, disliked=disliked)
        items = {
            it.id: it
            for it in self.store.get_items(
                list(dict.fromkeys([c.item_id for c in candidates] + context[-HISTORY_SCANNED:]))
            )
        }
        if constrained:
            candidates = [c for c in candidates if c.item_id in items and ask.constraints.admits(items[c.item_id])]
        if ask.preferences is not None:
            candidates = prefer(candidates, items, ask.preferences)
        candidates = candidates[:CANDIDATES]
        ids = [c.item_id for c in candidates]
        recent = [h for h in context[-HISTORY_SCANNED:] if h in items]  # evidence candidates
        scores, ranked_by, degraded = standardize([c.score for c in candidates]) if ids else np.empty(0), None, None
        weight = self.ranker_weight(adapter)
        if ids and weight > 0 and self.gate.available():
            try:
                scores = self._llm_rank(adapter, weight, context, ids, [c.score for c in candidates], items, deadline)
                ranked_by = adapter
            except (EngineError, EngineRequestError) as e:
                self.gate.failed(e)
                degraded = FAILED_RANKING
                self.metrics.llm_failures.labels("rank").inc()
        elif ids and weight > 0:
            degraded = self._unavailable()  # the ranker is in use but the LLM is not
        came_in = cited_as(events) | {h: ask.said.get(h, "asked") for h in seeds}
        vectors = self.retriever.index.content_vectors(ids + recent)
        picked = mmr(scores, vectors[: len(ids)], ask.k, ask.diversity) if ids else []
        history_vectors = vectors[len(ids) :]
        unit = history_vectors / np.maximum(np.linalg.norm(history_vectors, axis=1, keepdims=True), 1e-12)
        evidence = []
        for p in picked:
            v = vectors[p] / max(float(np.linalg.norm(vectors[p])), 1e-12)
            evidence.append(
                Evidence(
                    items[ids[p]],
                    choose_evidence(items[ids[p]], [items[h] for h in recent], unit @ v) if recent else [],
                    candidates[p].source,
                    # every cited item says how it came in: from the stored events (watched,
                    # liked, looked at: catalog.CITED_AS), or from the ask for one outside them
                    # ("asked" when the ask did not say), so nothing is called watched that was not
                    came_in,
                )
            )
        return Plan(
            ask,
            [items[ids[p]] for p in picked],
            [round(float(scores[p]), 4) for p in picked],
            ids,
            ranked_by,
            TextPlan(evidence, self.grounding, self.categories),
            started,
            deadline,
            degraded is not None,
            reason=None if ids else self.nothing_matches(ask.filters),
            history=history,
            degraded_reason=degraded,
        )

    def nothing_matches(self, filters: Filters) -> str:
        """Why an ask has no candidates, in words a client can act on."""
        unknown = [c for c in filters.categories if c not in self.categories]
        if unknown and len(unknown) == len(filters.categories):
            return (
                f"no item in the catalog has the category {unknown[0]!r}"
                if len(unknown) == 1
                else f"no item in the catalog has any of the categories {unknown}"
            )
        if filters.where() is not None:
            return "no item matches the filters outside the user's history, dislikes and exclusions"
        return "every item in the catalog is in the user's history, dislikes or exclusions"

    def texts(self, plan: Plan, cancel: threading.Event | None = None) -> Iterator[TextEvent]:
        """Each pick's explanation and draft, yielded as the LLM finishes them (in one batched
        generation); then, in order, whatever is left as its template. Stops early, with the
        engine's work dropped, at the deadline (texts left: templates, ``plan.degraded``) or
        when ``cancel`` is set (nothing more is yielded). With the LLM marked down, or
        ``self.admission``'s bound of answers already in the engine, every text is its template
        at once (``plan.degraded_reason`` says which)."""
        text_plan, done = plan.texts, set()
        if text_plan.jobs and not self.gate.available():
            plan.degrade(self._unavailable())
        elif text_plan.jobs:
            with self.admission.enter() as admitted:
                if admitted:
                    yield from self._llm_texts(plan, cancel, done)
                else:  # busy, not failing: the gate is not told
                    plan.degrade(self.admission.busy_reason())
                    self.metrics.llm_shed.inc()
            if cancel is not None and cancel.is_set():
                return
        for kind in KINDS:
            for n in range(len(plan.items)):
                if (n, kind) not in done:
                    yield self._event(plan, n, kind)
        plan.texts_done = True

    def _unavailable(self) -> str:
        """Why the LLM is not asked: none is served, or it is in its cool-down after a failure."""
        return NO_LLM if self.gate.engine is None else DOWN

    def _llm_texts(self, plan: Plan, cancel: threading.Event | None, done: set) -> Iterator[TextEvent]:
        """The engine's texts of ``plan`` as they finish (each added to ``done``); an engine
        failure or the deadline degrades the plan and starts the gate's cool-down."""
        text_plan = plan.texts
        try:
            for job, result in self.gate.engine.complete(text_plan.jobs, plan.deadline, cancel):
                n, kind = text_plan.accept(job, result)
                done.add((n, kind))
                yield self._event(plan, n, kind)
        except (EngineError, EngineRequestError) as e:
            self.gate.failed(e)
            plan.degrade(FAILED_WRITING)
            self.metrics.llm_failures.labels("generate").inc()
        if len(done) < len(text_plan.jobs) and not plan.degraded and not (cancel is not None and cancel.is_set()):
            self.gate.failed(TimeoutError())  # the deadline passed
            plan.degrade(f"the language model was not done within the {self.settings.llm_deadline_s:g} s deadline")
            self.metrics.llm_failures.labels("generate").inc()

    def _event(self, plan: Plan, n: int, kind: str) -> TextEvent:
        t = plan.texts.texts[n]
        outcome = t.outcomes[kind]
        self.metrics.texts.labels(kind, outcome).inc()
        if kind in t.rejected:
            self.metrics.text_rejections.labels(kind, t.rejected[kind].split(":")[0]).inc()
        return TextEvent(n, kind, getattr(t, kind), outcome)

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

    def _llm_rank(
        self,
        adapter: str,
        weight: float,
        context: list[str],
        ids: list[str],
        retrieval: list[float],
        items: dict[str, Item],
        deadline: float,
    ) -> np.ndarray:
        prompt = self._prompt(adapter)
        request = RankRequest.of([h for h in context if h in items], ids, retrieval, items, prompt)
        engine, name = self._rank_engine(adapter)
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            raise EngineError("the deadline passed before ranking")
        llm = Ranker(engine, name, weight, prompt).llm_scores([request], timeout=timeout)[0]
        return fuse(retrieval, llm, weight)

    def _prompt(self, adapter: str) -> PromptConfig:
        if adapter not in self._prompts:
            self._prompts[adapter] = prompt_config_of(self.adapters.get(adapter))
        return self._prompts[adapter]

    # ------------------------------------------------------------ intent

    def interpret(self, text: str, deadline: float | None = None) -> Intent:
        """Filters and query text from a natural-language request: the rules, or (with
        ``MUSE_INTENT_LLM``) the LLM's reading checked against the request, else the rules."""
        if not self.settings.intent_llm:
            self.metrics.intents.labels("rules").inc()
            return rule_intent(text, self.categories)
        if text in self._intents:  # earlier turns of a conversation come back with every turn
            return self._intents[text]
        ask = None
        if self.gate.available():
            budget = (deadline or time.monotonic() + self.settings.llm_deadline_s) - time.monotonic()

            def ask(conversation, schema):
                if budget <= 0:
                    raise LLMUnavailable("deadline already spent")
                try:
                    return self.gate.engine.generate([conversation], INTENT_TOKENS, None, 0.0, schema, timeout=budget)[
                        0
                    ]
                except (EngineError, EngineRequestError) as e:
                    self.gate.failed(e)
                    raise

        intent = parse_intent(text, self.categories, ask)
        self.metrics.intents.labels(
            intent.source if intent.source == "llm" or ask is None else "rules_after_llm"
        ).inc()
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

    def catalog_summary(self) -> tuple[int, list[str], int | None, int | None]:
        """(items, categories, first year, last year) of the catalog; the categories kept
        current as items are added."""
        n, year_min, year_max = self.store.catalog_summary()
        return n, list(self.categories), year_min, year_max

    def upsert_items(self, items: Sequence[Item]) -> dict[str, int]:
        changed = self.store.upsert_items(items)
        embedded = self.retriever.upsert_items(items)
        self.grounding.add(it.title for it in items)
        self.vocabulary.add(items)
        self.categories = sorted(set(self.categories) | {c for it in items for c in it.categories})
        self.onboarding_picks.refresh()  # new items may belong in the set
        return {"upserted": changed, "embedded": embedded}

    def close(self) -> None:
        for engine in self._rankers.values():
            engine.close()

"""The text stage: each pick's explanation and draft from one batched generation, yielded as the
engine finishes them, under the request's deadline and the admission bound; whatever the LLM did
not write is its template (``generation.TextPlan`` holds both)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from agent.llm.engine import EngineError, EngineRequestError
from agent.observability import Metrics
from agent.pipeline.admission import LLMAdmission
from agent.pipeline.answer import Plan, TextEvent
from agent.pipeline.evidence import Evidence
from agent.pipeline.generation import KINDS, TextPlan
from agent.pipeline.grounding import GroundingCheck
from agent.pipeline.llm_gate import FAILED_WRITING, LLMGate, LLMUnavailable


class TextWriter:
    """Writes a ``Plan`` 's texts with ``gate`` 's engine; ``admission`` bounds the answers in the
    engine at once; ``deadline_s`` is what a late answer's reason quotes."""

    def __init__(self, gate: LLMGate, admission: LLMAdmission, metrics: Metrics, deadline_s: float):
        self.gate, self.admission, self.metrics, self.deadline_s = gate, admission, metrics, deadline_s

    def texts(self, plan: Plan, cancel: threading.Event | None = None) -> Iterator[TextEvent]:
        """Each pick's explanation and draft, yielded as the LLM finishes them (in one batched
        generation); then, in order, whatever is left as its template. Stops early, with the
        engine's work dropped, at the deadline (texts left: templates, ``plan.degraded``) or
        when ``cancel`` is set (nothing more is yielded). With the LLM marked down, or
        ``admission`` 's bound of answers already in the engine, every text is its template at
        once (``plan.degraded_reason`` says which). Sets ``plan.texts_done`` at the end."""
        text_plan, done = plan.texts, set()
        if text_plan.jobs and not self.gate.available():
            plan.degrade(self.gate.unavailable_reason())
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
            plan.degrade(f"the language model was not done within the {self.deadline_s:g} s deadline")
            self.metrics.llm_failures.labels("generate").inc()

    def _event(self, plan: Plan, n: int, kind: str) -> TextEvent:
        t = plan.texts.texts[n]
        outcome = t.outcomes[kind]
        self.metrics.texts.labels(kind, outcome).inc()
        if kind in t.rejected:
            self.metrics.text_rejections.labels(kind, t.rejected[kind].split(":")[0]).inc()
        return TextEvent(n, kind, getattr(t, kind), outcome)

    def warm_up(self, items, grounding: GroundingCheck, categories: list[str]) -> None:
        """Write one pick's texts (``items[0]``, citing ``items[1:3]``) so the engine compiles
        before the first request. Raises ``LLMUnavailable`` when it does not finish; does
        nothing without an engine or with fewer than three items."""
        if self.gate.engine is None or len(items) < 3:
            return
        plan = TextPlan([Evidence(items[0], items[1:3])], grounding, categories)
        deadline = time.monotonic() + max(120.0, self.deadline_s)
        if len(list(self.gate.engine.complete(plan.jobs, deadline))) != len(plan.jobs):
            raise LLMUnavailable("the text warm-up did not finish")

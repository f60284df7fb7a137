"""Admission control for the LLM's text work (issue 25): a bound on the answers whose texts the
engine writes at once. An answer past the bound gets its templates at once, marked degraded with
the reason, and the engine is not marked down (it is busy, not failing). Without it, every
answer under load waited for the deadline, each late one started the cool-down, and at 16
concurrent clients every answer came back degraded (docs/soak.md, run 1). The bound is the
classic concurrency limit of a server (a semaphore that refuses rather than queues, as a load
shedder does); it comes from the machine (``agent.llm.hardware.resolve_in_flight``) and
``MUSE_LLM_MAX_IN_FLIGHT``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class LLMAdmission:
    """At most ``limit`` answers' texts in the engine at once; ``enter`` refuses past that.

    Raises ``ValueError`` for a ``limit`` below 1."""

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError(f"the LLM admission limit must be >= 1, got {limit}")
        self.limit = limit
        self._in_flight = 0
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        """Answers whose texts are being written now."""
        return self._in_flight

    @contextmanager
    def enter(self) -> Iterator[bool]:
        """``with admission.enter() as admitted:``; ``admitted`` is False when ``limit`` answers
        are in flight already (nothing was taken); the place is given back on leaving the block."""
        with self._lock:
            admitted = self._in_flight < self.limit
            if admitted:
                self._in_flight += 1
        try:
            yield admitted
        finally:
            if admitted:
                with self._lock:
                    self._in_flight -= 1

    def busy_reason(self) -> str:
        """What a degraded answer says when it was not admitted."""
        return (
            f"the language model was busy with {self.limit} other answer{'s' if self.limit != 1 else ''} "
            "(MUSE_LLM_MAX_IN_FLIGHT)"
        )

"""Whether the recommender asks the LLM now, and what a failure means.

An engine failure (unreachable, 5xx, timeout) makes the service skip the LLM for
``MUSE_LLM_RETRY_AFTER_S``, then try again, so it recovers by itself; a request the engine
refused (a 4xx) fails that request's LLM step alone. The reasons a degraded answer gives are
stated here once.
"""

from __future__ import annotations

import threading
import time

from agent.llm.engine import Engine, EngineRequestError

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
    (``EngineRequestError``) does not. ``engine`` None: the service runs without an LLM."""

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

    def unavailable_reason(self) -> str:
        """Why the LLM is not asked: none is served, or it is in its cool-down after a failure."""
        return NO_LLM if self.engine is None else DOWN

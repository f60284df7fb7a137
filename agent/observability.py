"""Prometheus metrics of the service (``GET /metrics``), in a registry of its own so several
apps in one process (tests) do not collide."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter("muse_http_requests", "HTTP requests", ["route", "status"], registry=r)
        self.latency = Histogram(
            "muse_request_seconds",
            "recommendation latency",
            ["endpoint"],
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80),
        )
        self.recommendations = Counter("muse_recommendations", "recommendation answers", ["mode"], registry=r)
        self.llm_failures = Counter(
            "muse_llm_failures", "LLM calls that failed or passed the deadline", ["stage"], registry=r
        )
        self.texts = Counter(
            "muse_texts",
            "texts shown, by outcome: llm (written by the LLM), fallback (written, "
            "refused by a check: template shown), template (the LLM was not asked or was late)",
            ["kind", "outcome"],
            registry=r,
        )
        self.llm_shed = Counter(
            "muse_llm_shed",
            "answers given template texts at once: the LLM was writing for MUSE_LLM_MAX_IN_FLIGHT others",
            registry=r,
        )
        self.text_rejections = Counter(
            "muse_text_rejections", "LLM continuations refused by a check, by reason", ["kind", "reason"], registry=r
        )
        self.first_content = Histogram(
            "muse_first_content_seconds",
            "request start to the picks being sent (streamed chat)",
            registry=r,
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10),
        )
        self.feedback = Counter("muse_feedback_events", "feedback events", ["result"], registry=r)

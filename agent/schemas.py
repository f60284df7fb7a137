"""Request and response bodies of the HTTP API, all in one place.

Requests forbid unknown fields (a typo is an error, not a silently ignored option) and bound
every size, so bad input is a 4xx that says what is wrong.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.catalog import _ID

# OpenAI chat-completion parameters a client may send; Muse accepts and ignores the ones it does
# not use (sampling settings, tools, ...). Anything else is an unknown field, as on other routes.
OPENAI_CHAT_FIELDS = frozenset({
    "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "max_completion_tokens", "metadata",
    "modalities", "parallel_tool_calls", "presence_penalty", "response_format", "seed", "service_tier",
    "stop", "store", "stream_options", "temperature", "tool_choice", "tools", "top_p", "audio",
    "prediction", "reasoning_effort", "functions", "function_call", "user",
})  # fmt: skip
MAX_K = 20  # the ranker orders 20 candidates
ID = Field(min_length=1, max_length=128, pattern=_ID.pattern)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------ recommendations


class FiltersIn(Strict):
    categories: list[str] = Field(default_factory=list, max_length=50)
    year_min: int | None = Field(None, ge=1800, le=2100)
    year_max: int | None = Field(None, ge=1800, le=2100)
    exclude_ids: list[str] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _years(self) -> FiltersIn:
        if self.year_min is not None and self.year_max is not None and self.year_min > self.year_max:
            raise ValueError(f"year_min {self.year_min} is after year_max {self.year_max}")
        return self


class RecommendationRequest(Strict):
    user_id: str = ID
    k: int = Field(10, ge=1, le=MAX_K)
    query: str | None = Field(None, max_length=1000)
    filters: FiltersIn = Field(default_factory=FiltersIn)
    diversity: float = Field(0.0, ge=0.0, le=1.0, description="0 = pure relevance; MMR weight")
    adapter: str | None = Field(None, max_length=128, description="ranker adapter name (allow-listed)")


class ItemOut(BaseModel):
    id: str
    title: str
    year: int | None
    categories: list[str]
    score: float
    explanation: str
    draft: str
    text_sources: dict[str, str]  # explanation/draft -> llm, regenerated, fallback or template

    @classmethod
    def of(cls, pick) -> ItemOut:
        """From a ``agent.service.Pick``."""
        it = pick.item
        return cls(id=it.id, title=it.title, year=it.year, categories=list(it.categories), score=pick.score,
                   explanation=pick.explanation, draft=pick.draft, text_sources=pick.text_outcomes)


class RecommendationResponse(BaseModel):
    user_id: str
    items: list[ItemOut]
    impression_id: str
    adapter: str | None
    degraded: bool
    candidate_ids: list[str]
    seconds: float

    @classmethod
    def of(cls, answer) -> RecommendationResponse:
        """From an ``agent.service.Answer``; the chat layer sends the same under ``muse``."""
        return cls(user_id=answer.user_id, items=[ItemOut.of(p) for p in answer.picks],
                   impression_id=answer.impression_id, adapter=answer.adapter, degraded=answer.degraded,
                   candidate_ids=answer.candidate_ids, seconds=answer.seconds)


# ------------------------------------------------------------ feedback and users


class FeedbackEvent(Strict):
    user_id: str = ID
    item_id: str = ID
    kind: Literal["impression", "click", "like", "dislike", "skip", "rating", "dwell", "view",
                  "explanation_like", "explanation_dislike", "draft_like", "draft_dislike"]
    value: float | None = Field(None, description="rating (0.5-5) or dwell seconds")
    timestamp: float | None = Field(None, ge=0, description="seconds since the epoch; default: now")
    impression_id: str | None = Field(None, max_length=64)
    idempotency_key: str = Field(min_length=1, max_length=200)

    @model_validator(mode="after")
    def _value(self) -> FeedbackEvent:
        if self.kind == "rating" and (self.value is None or not 0.5 <= self.value <= 5.0):
            raise ValueError("a rating needs a value between 0.5 and 5")
        if self.kind == "dwell" and (self.value is None or self.value < 0):
            raise ValueError("a dwell event needs its seconds (>= 0) as value")
        return self


class FeedbackRequest(Strict):
    events: list[FeedbackEvent] = Field(min_length=1, max_length=1000)


class FeedbackResponse(BaseModel):
    accepted: int
    duplicates: int


class ItemIn(Strict):
    id: str = ID
    title: str = Field(min_length=1, max_length=300)
    text: str = Field("", max_length=5000)
    categories: list[str] = Field(default_factory=list, max_length=30)
    year: int | None = Field(None, ge=1800, le=2100)
    metadata: dict[str, Any] = Field(default_factory=dict)


class ItemsRequest(Strict):
    items: list[ItemIn] = Field(min_length=1, max_length=1000)

    @field_validator("items")
    @classmethod
    def _unique(cls, items: list[ItemIn]) -> list[ItemIn]:
        ids = [it.id for it in items]
        if len(set(ids)) != len(ids):
            raise ValueError("item ids repeat within the request")
        return items


class EventOut(BaseModel):
    item_id: str
    kind: str
    value: float | None
    timestamp: float
    impression_id: str | None


class HistoryResponse(BaseModel):
    user_id: str
    events: list[EventOut]


# ------------------------------------------------------------ OpenAI-compatible chat


class ServeAdapterRequest(Strict):
    name: str = Field(min_length=1, max_length=100, description="a registered ranker adapter")
    split: bool = Field(False, description="A/B: split users between it and the current adapter")


class ServeAdapterResponse(BaseModel):
    serving: str
    previous: str | None
    loaded_at_runtime: bool
    ab_arms: list[str]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")  # clients send name, tool_calls, ...: harmless here

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | None = Field(None, max_length=20_000)


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # checked against OPENAI_CHAT_FIELDS below

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1, max_length=100)
    user: str = ID
    stream: bool = False
    n: int = Field(1, ge=1, le=1)
    max_tokens: int | None = Field(None, ge=1)
    muse: dict[str, Any] = Field(default_factory=dict, description='{"k": 5, "diversity": 0.3}')

    @model_validator(mode="after")
    def _known_fields(self) -> ChatRequest:
        unknown = sorted(set(self.model_extra or {}) - OPENAI_CHAT_FIELDS)
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}")
        return self

    @field_validator("muse")
    @classmethod
    def _options(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = set(value) - {"k", "diversity"}
        if unknown:
            raise ValueError(f"unknown muse options {sorted(unknown)}; allowed: k, diversity")
        if "k" in value and not (isinstance(value["k"], int) and 1 <= value["k"] <= MAX_K):
            raise ValueError(f"muse.k must be an integer from 1 to {MAX_K}")
        if "diversity" in value and not (isinstance(value["diversity"], int | float)
                                         and 0 <= value["diversity"] <= 1):
            raise ValueError("muse.diversity must lie in [0, 1]")
        return value

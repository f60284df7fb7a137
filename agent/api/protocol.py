"""Request and response bodies of the HTTP API, all in one place.

Requests forbid unknown fields (a typo is an error, not a silently ignored option), bound every
size and refuse non-finite numbers (``NaN``, ``Infinity``: Python's json module reads them), so
bad input is a 4xx that names the field and says what is wrong.

Event timestamps are seconds since the epoch, or ISO-8601 strings with a UTC offset
(``2025-01-24T03:31:23Z``). One more than a day in the future is refused: it is most likely in
milliseconds.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from agent.catalog import _ID, YEAR_MAX, YEAR_MIN
from agent.pipeline.ranker import CANDIDATES

# OpenAI chat-completion parameters that shape how a model samples text. Muse writes its texts
# with fixed, constrained decoding, so these have no effect; many clients send them by default,
# so they are accepted and named back in the `X-Muse-Ignored-Fields` header and under
# `muse.ignored_fields`, never dropped in silence.
NO_EFFECT_CHAT_FIELDS = frozenset(
    {
        "temperature",
        "top_p",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "metadata",
        "store",
        "service_tier",
        "stream_options",
        "reasoning_effort",
        "parallel_tool_calls",
    }
)
# OpenAI parameters asking for something Muse does not do -> (why, the "off" values some SDKs
# send by default). Sent with any other value, they are refused with a 422 that names them.
UNSUPPORTED_CHAT_FIELDS: dict[str, tuple[str, tuple]] = {
    "tools": ("Muse calls no tools", ([], None)),
    "functions": ("Muse calls no functions", ([], None)),
    "function_call": ("Muse calls no functions", ("none", None)),
    "tool_choice": ("Muse calls no tools", ("none", "auto", None)),
    "response_format": ("Muse answers in text (its structured data rides under `muse`)", ({"type": "text"}, None)),
    "logprobs": ("Muse returns no log-probabilities", (False, None)),
    "top_logprobs": ("Muse returns no log-probabilities", (0, None)),
    "logit_bias": ("Muse's decoding cannot be biased", ({}, None)),
    "audio": ("Muse answers in text only", (None,)),
    "modalities": ("Muse answers in text only", (["text"], None)),
    "prediction": ("Muse takes no predicted output", (None,)),
}
MAX_K = CANDIDATES  # at most as many picks as the ranker orders candidates
ID = Field(min_length=1, max_length=128, pattern=_ID.pattern)
FUTURE_SLACK_S = 86_400.0  # a timestamp may lie at most a day ahead of the server's clock


def _check_year_range(year_min: int | None, year_max: int | None, prefix: str = "") -> None:
    """Raises ``ValueError`` when both bounds are set and ``year_min`` is after ``year_max``;
    ``prefix`` names where the fields sit (``"muse."``)."""
    if year_min is not None and year_max is not None and year_min > year_max:
        raise ValueError(f"{prefix}year_min {year_min} is after {prefix}year_max {year_max}")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


MAX_JSON_DEPTH = 32  # nesting levels of a free-form JSON value (metadata, extra chat fields)


def _finite_json(value: Any, where: str = "metadata") -> Any:
    """``value`` unchanged if it nests at most ``MAX_JSON_DEPTH`` levels and every number in it
    is finite; else ``ValueError`` naming where. Walked with a stack, not recursion, so no body
    can exhaust the interpreter's stack."""
    stack = [(value, where, 0)]
    while stack:
        node, at, depth = stack.pop()
        if isinstance(node, float) and not math.isfinite(node):
            raise ValueError(f"{at} holds {node!r}: numbers must be finite")
        if isinstance(node, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise ValueError(f"{where} nests deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(node, dict):
                stack += [(inner, f"{at}.{key}", depth + 1) for key, inner in node.items()]
            else:
                stack += [(inner, f"{at}[{n}]", depth + 1) for n, inner in enumerate(node)]
    return value


def _epoch_seconds(value: Any) -> Any:
    """A timestamp as seconds since the epoch: numbers as given, ISO-8601 strings with a UTC
    offset converted exactly. Anything else is passed on for the float check to refuse."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())  # 3.11+: "Z" too
        except ValueError:
            raise ValueError(f"{value!r} is neither seconds since the epoch nor an ISO-8601 date-time") from None
        if parsed.tzinfo is None:
            raise ValueError(f"{value!r} has no UTC offset: add one (for example Z or +02:00)")
        return parsed.timestamp()
    return value


Timestamp = Annotated[float, BeforeValidator(_epoch_seconds), Field(ge=0)]


# ------------------------------------------------------------ recommendations


class ErrorDetail(BaseModel):
    message: str = Field(description="what is wrong, in words a caller can act on")
    type: str = Field(description="OpenAI's error type: invalid_request_error, not_found, conflict, ...")
    code: int = Field(description="the HTTP status")


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx answer of Muse: OpenAI's error shape, so OpenAI clients raise with the
    message (``agent.api.app.error``)."""

    error: ErrorDetail


class FiltersIn(Strict):
    categories: list[str] = Field(default_factory=list, max_length=50)
    year_min: int | None = Field(None, ge=YEAR_MIN, le=YEAR_MAX)
    year_max: int | None = Field(None, ge=YEAR_MIN, le=YEAR_MAX)
    exclude_ids: list[str] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _years(self) -> FiltersIn:
        _check_year_range(self.year_min, self.year_max)
        return self


class RecommendationRequest(Strict):
    user_id: str = ID
    k: int = Field(10, ge=1, le=MAX_K)
    query: str | None = Field(None, max_length=1000)
    filters: FiltersIn = Field(default_factory=FiltersIn)
    diversity: float = Field(0.0, ge=0.0, le=1.0, description="0 = pure relevance; MMR weight")
    adapter: str | None = Field(None, max_length=128, description="ranker adapter name (allow-listed)")


class ItemBrief(BaseModel):
    """An item as a list shows it."""

    id: str
    title: str
    year: int | None
    categories: list[str]

    @classmethod
    def of(cls, item) -> ItemBrief:
        """From an ``agent.catalog.Item``."""
        return cls(id=item.id, title=item.title, year=item.year, categories=list(item.categories))


class ItemOut(BaseModel):
    id: str
    title: str
    year: int | None
    categories: list[str]
    score: float
    explanation: str
    draft: str
    text_sources: dict[str, str]  # explanation/draft -> llm, regenerated, fallback or template
    cited: list[ItemBrief] = Field(description="the user's history items the explanation draws on")

    @classmethod
    def of(cls, pick) -> ItemOut:
        """From a ``agent.pipeline.answer.Pick``."""
        it = pick.item
        return cls(
            id=it.id,
            title=it.title,
            year=it.year,
            categories=list(it.categories),
            score=pick.score,
            explanation=pick.explanation,
            draft=pick.draft,
            text_sources=pick.text_outcomes,
            cited=[ItemBrief.of(h) for h in pick.cited],
        )


class RecommendationResponse(BaseModel):
    user_id: str
    items: list[ItemOut]
    impression_id: str
    adapter: str | None
    degraded: bool
    candidate_ids: list[str]
    seconds: float
    reason: str | None = Field(None, description="why `items` is empty (null when it is not)")
    degraded_reason: str | None = Field(
        None, description="why `degraded` (null when it is not): the LLM was busy, unavailable, failed or late"
    )

    @classmethod
    def of(cls, answer) -> RecommendationResponse:
        """From an ``agent.pipeline.answer.Answer``; the chat layer sends the same under ``muse``."""
        return cls(
            user_id=answer.user_id,
            items=[ItemOut.of(p) for p in answer.picks],
            impression_id=answer.impression_id,
            adapter=answer.adapter,
            degraded=answer.degraded,
            candidate_ids=answer.candidate_ids,
            seconds=answer.seconds,
            reason=answer.reason,
            degraded_reason=answer.degraded_reason,
        )


# ------------------------------------------------------------ feedback and users


class FeedbackEvent(Strict):
    user_id: str = ID
    item_id: str = ID
    kind: Literal[
        "impression",
        "click",
        "like",
        "dislike",
        "skip",
        "rating",
        "dwell",
        "view",
        "explanation_like",
        "explanation_dislike",
        "draft_like",
        "draft_dislike",
    ]
    value: float | None = Field(None, description="rating (0.5-5) or dwell seconds")
    timestamp: Timestamp | None = Field(
        None, description="seconds since the epoch, or ISO-8601 with a UTC offset; default: now"
    )
    impression_id: str | None = Field(None, max_length=64)
    idempotency_key: str = Field(min_length=1, max_length=200)

    @model_validator(mode="after")
    def _value(self) -> FeedbackEvent:
        if self.kind == "rating" and (self.value is None or not 0.5 <= self.value <= 5.0):
            raise ValueError("a rating needs a value between 0.5 and 5")
        if self.kind == "dwell" and (self.value is None or self.value < 0):
            raise ValueError("a dwell event needs its seconds (>= 0) as value")
        if self.timestamp is not None and self.timestamp > time.time() + FUTURE_SLACK_S:
            raise ValueError(
                f"timestamp {self.timestamp:.0f} is more than a day in the future; Muse takes "
                "seconds since the epoch (was it sent in milliseconds?)"
            )
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
    year: int | None = Field(None, ge=YEAR_MIN, le=YEAR_MAX)
    metadata: Annotated[dict[str, Any], BeforeValidator(_finite_json)] = Field(default_factory=dict)


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
    title: str | None = Field(None, description="the item's title (null if it left the catalog)")
    kind: str
    value: float | None
    timestamp: float
    impression_id: str | None


class HistoryResponse(BaseModel):
    user_id: str
    events: list[EventOut]


class UserOut(BaseModel):
    user_id: str
    events: int


class UsersResponse(BaseModel):
    """The users the caller may act for (all of them for an admin key), with event counts."""

    users: list[UserOut]
    next_after: str | None = Field(
        None, description="the last user id of a full page: pass it as `after` for the next; null on the last page"
    )


class CatalogResponse(BaseModel):
    """What the catalog holds, for filters: its size, categories and year range."""

    items: int
    categories: list[str]
    year_min: int | None
    year_max: int | None


class OnboardingResponse(BaseModel):
    """Items to ask a new user about (spread over categories and popularity); the ones they
    like go back as ``like`` events (``POST /v1/feedback``, or ``muse.liked`` in a chat)."""

    items: list[ItemBrief]


class ForgetResponse(BaseModel):
    user_id: str
    deleted: dict[str, int] = Field(description="rows deleted per store table")
    exported_rows: dict[str, int] = Field(description="rows removed per exported training-data file")
    in_model_weights: list[str] = Field(
        description="trained weights fitted on this user's data; they keep it until trained again without them"
    )


# ------------------------------------------------------------ OpenAI-compatible chat


class ServeAdapterRequest(Strict):
    name: str = Field(min_length=1, max_length=100, description="a registered ranker adapter")
    split: bool = Field(False, description="A/B: split users between it and the current adapter")


class ServeAdapterResponse(BaseModel):
    serving: str
    previous: str | None
    loaded_at_runtime: bool
    ab_arms: list[str]


def _joined_text(content: Any) -> Any:
    """OpenAI's array content (``[{"type": "text", "text": ...}, ...]``) joined into one text,
    parts separated by a line break; a part that is not text is refused by name."""
    if not isinstance(content, list):
        return content
    texts = []
    for n, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text":
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise ValueError(f"content[{n}] is a {kind!r} part; Muse reads text parts only")
        if not isinstance(part.get("text"), str):
            raise ValueError(f"content[{n}] is a text part without a string `text`")  # noqa: TRY004 (pydantic wants ValueError)
        texts.append(part["text"])
    return "\n".join(texts)


class ChatMessage(BaseModel):
    # Clients send name, tool_call_id, ... with messages: none of them changes what Muse reads.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: Annotated[str | None, BeforeValidator(_joined_text)] = Field(None, max_length=20_000)


class ChatRequest(BaseModel):
    # Extra fields are checked against NO_EFFECT_CHAT_FIELDS and UNSUPPORTED_CHAT_FIELDS below.
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1, max_length=100)
    user: str = ID
    stream: bool = False
    n: int = Field(1, ge=1, le=1)
    muse: dict[str, Any] = Field(
        default_factory=dict,
        description='{"k": 5, "diversity": 0.3, "categories": ["Comedy"], "year_min": 1990, "year_max": 1999, '
        '"liked": ["item-id", ...]}: filters override what the message says; liked items become the '
        "user's history before the answer (a new user's first answer lists items to ask about under "
        "muse.onboarding)",
    )

    @model_validator(mode="after")
    def _known_fields(self) -> ChatRequest:
        extra = self.model_extra or {}
        unknown = sorted(set(extra) - NO_EFFECT_CHAT_FIELDS - set(UNSUPPORTED_CHAT_FIELDS))
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}")
        for name, (why, off) in UNSUPPORTED_CHAT_FIELDS.items():
            if name in extra and extra[name] not in off:
                raise ValueError(f"`{name}` is not supported: {why}")
        _finite_json(extra, "request")
        return self

    @property
    def ignored_fields(self) -> list[str]:
        """The fields sent that have no effect on Muse's answer (``NO_EFFECT_CHAT_FIELDS``)."""
        return sorted(set(self.model_extra or {}) & NO_EFFECT_CHAT_FIELDS)

    @field_validator("muse")
    @classmethod
    def _options(cls, value: dict[str, Any]) -> dict[str, Any]:
        return MuseOptions.model_validate(value).model_dump(exclude_unset=True)

    @property
    def options(self) -> MuseOptions:
        """The ``muse`` options, typed (validated already)."""
        return MuseOptions.model_validate(self.muse)


class MuseOptions(Strict):
    """The ``muse`` object of a chat request: Muse's own options."""

    k: int = Field(5, ge=1, le=MAX_K, strict=True)
    diversity: float = Field(0.0, ge=0.0, le=1.0)
    categories: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(default_factory=list, max_length=50)
    year_min: int | None = Field(None, ge=0, le=3000, strict=True)
    year_max: int | None = Field(None, ge=0, le=3000, strict=True)
    liked: list[Annotated[str, ID]] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _years(self) -> MuseOptions:
        _check_year_range(self.year_min, self.year_max, "muse.")
        return self


# ------------------------------------------------------------ OpenAI chat completions (responses)
# The subset of OpenAI's chat-completion objects Muse sends, plus Muse's structured data under
# `muse`. Field names and values follow OpenAI's API reference for `chat.completion` and
# `chat.completion.chunk`.


class IntentOut(BaseModel):
    """How the newest user turn was read: ``source`` "llm" or "rules"; ``read_ms``: the time the
    reading took on the server (the messages to the request state), milliseconds."""

    query: str
    categories: list[str]
    year_min: int | None
    year_max: int | None
    source: str
    read_ms: float = Field(0.0, ge=0.0)

    @classmethod
    def of(cls, intent) -> IntentOut:
        """From an ``agent.pipeline.intent.Intent``."""
        return cls(
            query=intent.query,
            categories=list(intent.categories),
            year_min=intent.year_min,
            year_max=intent.year_max,
            source=intent.source,
            read_ms=round(intent.read_ms, 3),
        )


class MuseChatData(RecommendationResponse):
    """What ``/v1/recommendations`` returns, plus how the request was read and which of the
    request's fields had no effect (``ChatRequest.ignored_fields``)."""

    intent: IntentOut
    ignored_fields: list[str]
    onboarding: list[ItemBrief] = Field(
        default_factory=list, description="for a user with no history: items to ask them about (send back as liked)"
    )


class Usage(BaseModel):
    """Tokens the engine read (``prompt_tokens``) and wrote (``completion_tokens``) for the
    answer's texts; the ranking pass and the intent reading are not counted."""

    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    total_tokens: int = Field(ge=0)

    @classmethod
    def of(cls, answer) -> Usage:
        """From an ``agent.pipeline.answer.Answer``."""
        return cls(
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            total_tokens=answer.prompt_tokens + answer.completion_tokens,
        )


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop"] = "stop"


class ChatCompletion(BaseModel):
    """A whole answer (``stream: false``)."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int  # seconds since the epoch
    model: str
    choices: list[Choice]
    usage: Usage
    muse: MuseChatData


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: ChunkDelta
    finish_reason: Literal["stop"] | None = None


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a stream; the last one carries ``finish_reason`` "stop",
    ``usage`` and ``muse``. Serialised with ``exclude_unset``, so a delta holds only what it
    sets and ``usage``/``muse`` appear on the last chunk only."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    muse: MuseChatData | None = None

"""What flows through the recommender (``service.MuseAgent``): the ``Ask`` a route builds, the
``Plan`` (picks before their texts), each ``TextEvent`` as a text is final, and the ``Answer``
with its ``Pick`` s. Data only; the stages that fill them are their own modules."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.catalog import Item
from agent.pipeline.generation import TextPlan
from agent.pipeline.ranker import CANDIDATES
from agent.pipeline.reader import Constraints
from retrieval.index import Filters


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
    # Candidates retrieved and ranked before the picks. Serving keeps the ranker's 20
    # (``CANDIDATES``); a trainer looking deeper for labels asks for more.
    depth: int = CANDIDATES


@dataclass
class Pick:
    """One recommended item: its score (standardized, fused with the ranker's when one ranked),
    its two texts and how each was written (``text_outcomes``: kind -> "llm", "fallback" or
    "template")."""

    item: Item
    score: float
    explanation: str
    draft: str
    text_outcomes: dict[str, str]
    cited: list[Item] = field(default_factory=list)  # the history items its explanation draws on


@dataclass
class Answer:
    """The whole answer to an ``Ask``: at most ``k`` picks, the candidates they came from, the
    impression id it was logged under, and whether (and why) it is degraded."""

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

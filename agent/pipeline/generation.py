"""Personalized text for each recommendation: an explanation and a draft (a short pitch),
right by construction rather than only checked afterwards.

Muse writes the start of every text from the evidence; the model continues it:

- explanation: ``You watched "A" and "B", so try "Pick" (1998), another crime film:`` + a few
  words from the model about what the pick is about. The reader's films, the pick, its year and
  the shared category come from the catalog and the user's history, never from the model.
- draft: ``"Pick" (1998) is a crime thriller`` + the rest of one sentence from the model: the
  pitch always names the pick and never gives it a genre it does not have.

Both engines constrain the continuation: no double quote (so the model cannot quote a title),
no line break, no genre word the pick does not have; it is made of the facts it was given
(``text_facts.fact_spans``: runs of the description's and credits' own words
joined by light connectives, ``engine.span_grammar``; issue 24), and it ends at its first
sentence end; a continuation cut by the token bound before that is rejected, never shown. (Two-sentence
drafts were tried: the second sentence was where the 135M model invented or copied, so a draft
is one sentence.) The prompts (Jinja2, ``prompts/``) put worked examples of invented films
before every request (``prompts/text_examples.json``); they are the same for every request,
so vLLM's prefix cache computes them once.

A continuation that passes is shown as written (outcome ``llm``). The checks of
``agent.pipeline.text_quality`` stay as a second line of defence: a continuation that names a title
outside the evidence, tells the reader they watched the pick, repeats a citation or itself,
gives the pick a category or a year it does not have, copies words of the worked examples'
invented films, holds a word no fact supports (``support.support``), or says next to nothing is
replaced by the template text (outcome
``fallback``, with the reason).
Texts the LLM was not asked for (nothing to cite, or a pick with neither a description nor
credits: the model knows nothing about these films, design.md, so it would have to invent;
``text_facts``) or did not deliver in
time are templates (``template``).
There is no second attempt on the request path.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

from agent.catalog import Item
from agent.llm.engine import Message, TextJob, TextResult
from agent.pipeline.evidence import Evidence
from agent.pipeline.grounding import GroundingCheck, natural_title
from agent.pipeline.prompts import PROMPTS_DIR, render
from agent.pipeline.support import support
from agent.pipeline.text_facts import (
    fact_spans,
    has_facts,
    leads,
    prompt_facts,
    shared_details,
    shared_words,
    shown_facts,
)
from agent.pipeline.text_quality import (
    GENRE_WORDS,
    carries_payload,
    cited_titles,
    claimed_categories,
    claims_watched_pick,
    copied_phrases,
    cut_repeat,
    names_history,
    repeats_phrase,
    repeats_sentence,
    safe_description,
    wrong_years,
)

EXPLAIN_TOKENS, DRAFT_TOKENS = 64, 80  # bounds on the continuations (one sentence each)
MIN_WORDS = 1  # a continuation must say something beyond the titles it names ("mafia." is a fact; "" is not)
KINDS = ("explanation", "draft")

# How "another ___" reads for a category; others read "another <category> film".
_NOUNS = {
    "drama": "drama",
    "comedy": "comedy",
    "thriller": "thriller",
    "romance": "romance",
    "western": "western",
    "musical": "musical",
    "documentary": "documentary",
    "mystery": "mystery",
    "fantasy": "fantasy",
    "adventure": "adventure",
    "animation": "animated film",
    "children": "family film",
    "family": "family film",
    "film-noir": "film noir",
    "sci-fi": "sci-fi film",
}


# How a category reads in front of another ("romantic drama", "animated family film").
_MODIFIERS = {"romance": "romantic", "animation": "animated", "children": "family", "film-noir": "noir"}


def genre_phrase(categories: Sequence[str]) -> str:
    """The first two categories as a noun phrase: ``("Action", "Thriller")`` -> "action
    thriller", ``("Romance", "Drama")`` -> "romantic drama", ``("Crime",)`` -> "crime film"."""
    cats = [c.lower() for c in categories[:2]]
    if not cats:
        return ""
    noun = _NOUNS.get(cats[-1], f"{cats[-1]} film")
    if len(cats) == 1:
        return noun
    return f"{_MODIFIERS.get(cats[0], cats[0])} {noun}"


# Metadata shared with the cited films, as an explanation's start says it: a tone as the adjective
# of "another ___" ("another tense thriller"), people by their part. Other fields are not said there.
ADJECTIVE_FIELDS = ("tone",)
ALSO = {"director": "also directed by {}", "writer": "also written by {}", "cast": "also with {}"}
ALSO_PHRASES = 2  # at most, after "another ___"


def shared_phrase(ev: Evidence) -> str:
    """``"crime film"``, ``"drama"``, ... for the first shared category, after a shared tone
    (``"tense thriller"``; ``"tense film"`` with no category shared); ``""`` when neither."""
    adjective = next((v for f, v in shared_details(ev) if f in ADJECTIVE_FIELDS), "")
    if not ev.shared_categories:
        return f"{adjective} film" if adjective else ""
    category = ev.shared_categories[0].lower()
    return f"{adjective} {_NOUNS.get(category, f'{category} film')}".strip()


def also_phrases(ev: Evidence) -> list[str]:
    """People the pick shares with the cited films, as the start says them (``ALSO``): "also
    directed by Michael Mann", "also with Al Pacino"; at most ``ALSO_PHRASES``, a name holding
    a colon or a double quote never (the start's own punctuation)."""
    said = [ALSO[f].format(v) for f, v in shared_details(ev) if f in ALSO and not set(v) & set(':"')]
    return said[:ALSO_PHRASES]


def model_part(text: str, ev: Evidence, kind: str) -> str:
    """What the model wrote of ``text`` (a shown text of ``kind``): the text after Muse's own
    start. An explanation's start ends with the colon after the quoted pick (the model writes no
    double quote, so the last quoted pick is the start's), whatever words it gave the cited
    items; a draft's is ``draft_start``. The whole text when there is no such start (a template)."""
    if kind == "explanation":
        quoted = f'"{natural_title(ev.item.title)}"'
        at = text.rfind(quoted)
        colon = text.find(":", at + len(quoted)) if at >= 0 else -1
        return text[colon + 1 :] if colon >= 0 else text
    return text.removeprefix(draft_start(ev))


CITED_ORDER = ("watched", "liked", "looked at", "asked")  # how cited films are grouped, in this order


def cited_groups(ev: Evidence) -> list[tuple[str, list[Item]]]:
    """The cited history items grouped by how each came in (``Evidence.said``), in ``CITED_ORDER``."""
    groups: dict[str, list[Item]] = {}
    for h in ev.history:
        groups.setdefault(ev.said.get(h.id, "watched"), []).append(h)
    return [(why, groups[why]) for why in CITED_ORDER if why in groups]


def explanation_start(ev: Evidence) -> str:
    """The explanation's first words, written from the evidence (ends with a colon)."""
    return render(
        "explain_start.jinja",
        groups=[(why, [natural_title(h.title) for h in items]) for why, items in cited_groups(ev)],
        title=natural_title(ev.item.title),
        year=ev.item.year,
        shared=shared_phrase(ev),
        also=also_phrases(ev),
    )


def draft_start(ev: Evidence) -> str:
    """The draft's first words: the pick, its year and its genres (from the catalog)."""
    genre = genre_phrase(ev.item.categories)
    article = "an" if genre[:1] in tuple("aeiou") else "a"
    return render(
        "draft_start.jinja",
        title=natural_title(ev.item.title),
        year=ev.item.year,
        genre=f"{article} {genre}" if genre else "",
    )


def _explain_user(ev: Evidence) -> str:
    groups = [
        (why, [{"title": natural_title(h.title), "categories": list(h.categories)} for h in items])
        for why, items in cited_groups(ev)
    ]
    return render("explain.jinja", groups=groups, common=shared_words(ev), **prompt_facts(ev.item))


def _draft_user(ev: Evidence) -> str:
    # The reader's films are not shown: a pitch is about the pick, and the packaged model,
    # shown them, wove their titles into the pick's plot.
    return render("draft.jinja", common=shared_words(ev), **prompt_facts(ev.item))


@cache
def system_prompt() -> str:
    """The system turn of both text prompts."""
    return render("text_system.jinja")


def text_prompt(ev: Evidence, kind: str) -> tuple[list[Message], str]:
    """The system and user turns that ask for one text, and the answer's start."""
    system = {"role": "system", "content": system_prompt()}
    if kind == "explanation":
        return [system, {"role": "user", "content": _explain_user(ev)}], explanation_start(ev)
    return [system, {"role": "user", "content": _draft_user(ev)}], draft_start(ev)


@cache
def _example_turns(kind: str) -> tuple[tuple[str, str], ...]:
    """The worked examples of ``kind`` as (user turn, assistant turn) pairs."""
    raw = json.loads((PROMPTS_DIR / "text_examples.json").read_text())[kind]
    turns = []
    for ex in raw:
        item = Item(
            "example", ex["item"]["title"], ex["item"]["text"], tuple(ex["item"]["categories"]), ex["item"]["year"]
        )
        history = [Item(f"example-{n}", h["title"], "", tuple(h["categories"])) for n, h in enumerate(ex["history"])]
        messages, start = text_prompt(Evidence(item, history), kind)
        turns.append((messages[1]["content"], start + ex["continuation"]))
    return tuple(turns)


def text_job(ev: Evidence, kind: str, categories: Sequence[str] = ()) -> TextJob:
    """The engine job for one text: system turn, the worked examples, the request, its start;
    the genre words of ``categories`` (the catalog's) that the pick does not have are banned."""
    messages, start = text_prompt(ev, kind)
    examples = [
        m
        for user, answer in _example_turns(kind)
        for m in ({"role": "user", "content": user}, {"role": "assistant", "content": answer})
    ]
    avoid = tuple(w for c in categories if c not in ev.item.categories for w in GENRE_WORDS.get(c.lower(), ()))
    return TextJob(
        [messages[0], *examples, messages[1]],
        start,
        sentences=1,
        max_tokens=EXPLAIN_TOKENS if kind == "explanation" else DRAFT_TOKENS,
        avoid=avoid,
        spans=fact_spans(ev, kind),
        leads=leads(ev, kind),
    )


def template_explanation(ev: Evidence) -> str:
    """The explanation without the model: the start, closed with a full stop."""
    if not ev.history:
        year = f" ({ev.item.year})" if ev.item.year else ""
        genre = genre_phrase(ev.item.categories)
        article = "an" if genre[:1] in tuple("aeiou") else "a"
        why = {
            "content": f"matches what you asked for{f', {article} {genre}' if genre else ''}",
            "catalog": "is new in the catalog and fits your filters",
        }.get(ev.source, "is popular with people right now")
        return f'"{natural_title(ev.item.title)}"{year} {why}.'
    return explanation_start(ev).removesuffix(":") + "."


def template_draft(ev: Evidence) -> str:
    """The draft without the model: title, year, categories and the description's first
    sentence (or its tags), never cut mid-sentence."""
    text = draft_start(ev) + "."
    about = safe_description(ev.item.text)  # no links, nothing addressed to a model
    if about.startswith("Tags:"):  # MovieLens items: their tags are the description
        text += f" Viewers tag it {about.removeprefix('Tags:').strip().rstrip('.')}."
    elif about:
        first = about.split(". ")[0].rstrip(".!? ")
        text += f" {first}."
    return text


@dataclass
class Texts:
    explanation: str
    draft: str
    # "explanation"/"draft" -> "llm" (written by the model and passed the checks), "fallback"
    # (written, failed a check: template shown) or "template" (the model was not asked, or did
    # not answer in time)
    outcomes: dict[str, str]
    rejected: dict[str, str] = field(default_factory=dict)  # kind -> why the continuation was refused


@cache
def example_continuations(kind: str) -> tuple[str, ...]:
    """What the worked examples of ``kind`` have the model write."""
    return tuple(ex["continuation"] for ex in json.loads((PROMPTS_DIR / "text_examples.json").read_text())[kind])


def rejection(
    ev: Evidence, kind: str, result: TextResult, check: GroundingCheck, categories: Sequence[str] = ()
) -> str:
    """Why a continuation may not be shown ("" when it may). ``categories``: the catalog's, to
    catch a category the pick does not have."""
    if not result.complete:
        return "cut_off"
    if carries_payload(result.text) or copied_phrases(result.text, [system_prompt()]):
        return "unsafe"  # a link, words addressed to a model, or the system prompt echoed
    start = explanation_start(ev) if kind == "explanation" else draft_start(ev)
    text, added = start + result.text, result.text
    foreign = check.foreign_titles(text, ev.allowed_titles)
    if foreign:
        return f"unknown_title: {foreign[0]}"
    if claims_watched_pick(text, ev.item.title):
        return "claims_watched"
    named = cited_titles(added, [natural_title(t) for t in ev.allowed_titles])
    history = [natural_title(h.title) for h in ev.history]
    if kind == "explanation" and cited_titles(added, history):
        return "repeated_citation"  # the start cites the evidence already
    if kind == "draft" and names_history(added, ev.item, history):
        return "names_history"  # a draft pitches the pick alone
    wrong = [c for c in claimed_categories(added, categories) if c not in ev.item.categories]
    if wrong:
        return f"wrong_category: {wrong[0]}"
    if wrong_years(added, [ev.item.year]):
        return "wrong_year"
    given = [ev.item.text, *(h.title for h in ev.history), ev.item.title]
    if copied_phrases(added, example_continuations(kind), given):
        return "copied_example"  # facts of the worked examples' invented films
    if unsupported := support(added, shown_facts(ev, kind)).unsupported:
        return f"unsupported: {unsupported[0]}"  # a word no fact given to the model stands behind
    rest = added
    for title in named:
        rest = rest.replace(title, " ")
    if len(re.findall(r"\w+", rest)) < MIN_WORDS:
        return "too_short"
    if repeats_sentence(text) or repeats_phrase(added):
        return "repetitive"
    return ""


class TextPlan:
    """The texts of one answer: the jobs asked of the engine (explanations first, then drafts)
    and, as results arrive, what each pick will show. Everything starts as its template, so
    whatever the engine does not deliver stays a template."""

    def __init__(self, evidence: Sequence[Evidence], check: GroundingCheck, categories: Sequence[str] = ()):
        self.evidence, self.check, self.categories = list(evidence), check, list(categories)
        self.texts = [
            Texts(template_explanation(ev), template_draft(ev), {k: "template" for k in KINDS}) for ev in evidence
        ]
        self.keys: list[tuple[int, str]] = []  # job index -> (pick, kind)
        for kind in KINDS:
            for n, ev in enumerate(evidence):
                # The model is asked only where it has facts to write from: a pick with no
                # description and no credits (many MovieLens films) and, for an explanation, a
                # reader with no history keep their templates.
                if has_facts(ev.item) and (kind == "draft" or ev.history):
                    self.keys.append((n, kind))
        self.jobs = [text_job(self.evidence[n], kind, self.categories) for n, kind in self.keys]
        self.prompt_tokens = self.completion_tokens = 0  # what the engine read and wrote, summed

    def accept(self, job: int, result: TextResult) -> tuple[int, str]:
        """Take the engine's result for job ``job``; returns its (pick, kind)."""
        n, kind = self.keys[job]
        ev, texts = self.evidence[n], self.texts[n]
        self.prompt_tokens += result.prompt_tokens
        self.completion_tokens += result.completion_tokens
        if self.jobs[job].spans:  # a run of the facts copied twice: the second copy goes
            result = dataclasses.replace(result, text=cut_repeat(result.text))
        why = rejection(ev, kind, result, self.check, self.categories)
        if why:
            texts.outcomes[kind], texts.rejected[kind] = "fallback", why
        else:
            start = explanation_start(ev) if kind == "explanation" else draft_start(ev)
            setattr(texts, kind, start + result.text)
            texts.outcomes[kind] = "llm"
        return n, kind

    def prompts(self, n: int) -> dict[str, dict]:
        """Pick ``n``'s texts, each with the prompt and start the engine was given for it (system
        turn, worked examples, request: what a rating of the text trains on). A text the model
        was not asked for (a template) carries the prompt it would have been asked with."""
        jobs = dict(zip(self.keys, self.jobs, strict=True))
        out = {}
        for kind in KINDS:
            job = jobs.get((n, kind)) or text_job(self.evidence[n], kind, self.categories)
            out[kind] = {
                "prompt": job.messages,
                "prefix": job.prefix,
                "text": getattr(self.texts[n], kind),
                "source": self.texts[n].outcomes[kind],
            }
        return out

"""Personalized text for each recommendation: an explanation and a draft (a short pitch).

Both come from Jinja2 templates in ``prompts/`` and are generated in one batched engine call.
Each text is checked by ``GroundingCheck``; a failing one is regenerated once (sampled, so it
can come out differently), and if it fails again the template text built from the evidence is
used instead. Every outcome is returned so the service can count it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.catalog import Item
from agent.grounding import GroundingCheck, natural_title
from agent.prompts import render

EXPLAIN_TOKENS, DRAFT_TOKENS = 48, 72
DESCRIPTION_CHARS = 240


@dataclass
class Evidence:
    """What a recommendation's text may draw on: the item, and the history items nearest it."""

    item: Item
    history: list[Item]  # the user's items most similar to this one, best first (may be empty)

    @property
    def shared_categories(self) -> list[str]:
        mine = set(self.item.categories)
        return sorted({c for h in self.history for c in h.categories if c in mine})


@dataclass
class Texts:
    explanation: str
    draft: str
    # "explanation"/"draft" -> "llm" (passed the check), "regenerated" (passed at the second try),
    # "fallback" (failed twice: template text) or "template" (the LLM was not asked)
    outcomes: dict[str, str]
    first_try_failures: dict[str, str]  # kind -> reason, for texts that failed the first check


def template_explanation(ev: Evidence) -> str:
    title = natural_title(ev.item.title)
    year = f" ({ev.item.year})" if ev.item.year else ""
    if not ev.history:
        return f'"{title}"{year} is popular with people right now.'
    cited = " and ".join(f'"{natural_title(h.title)}"' for h in ev.history[:2])
    shared = ev.shared_categories
    why = f"it is {', '.join(shared)} too" if shared else "people who liked those went on to watch it"
    return f'Because you watched {cited}: "{title}"{year}, since {why}.'


def template_draft(ev: Evidence) -> str:
    title = natural_title(ev.item.title)
    year = f" ({ev.item.year})" if ev.item.year else ""
    kind = ", ".join(ev.item.categories) or "film"
    about = ev.item.text[:DESCRIPTION_CHARS].rstrip() if ev.item.text else ""
    return f'"{title}"{year}, {kind}. {about}'.strip()


def text_conversations(ev: Evidence) -> tuple[list[dict], list[dict]]:
    system = {"role": "system", "content": render("generate_system.jinja")}
    evidence = [natural_title(h.title) for h in ev.history[:2]]
    common = {"title": natural_title(ev.item.title), "year": ev.item.year,
              "categories": list(ev.item.categories), "evidence": evidence}
    explain = render("explain.jinja", shared=ev.shared_categories, **common)
    draft = render("draft.jinja", description=ev.item.text[:DESCRIPTION_CHARS], **common)
    return ([system, {"role": "user", "content": explain}], [system, {"role": "user", "content": draft}])


def clean(text: str) -> str:
    """First paragraph, whitespace collapsed."""
    return " ".join(text.strip().split("\n\n")[0].split())


def write_texts(
    evidence: Sequence[Evidence],
    generate: Callable[[list[list[dict]], int, float], list[str]],
    check: GroundingCheck,
) -> list[Texts]:
    """Explanation and draft for each item. ``generate(conversations, max_tokens, temperature)``
    is the engine call (it may raise: the caller then falls back to templates wholesale)."""
    jobs = []  # (item index, kind, conversation, max tokens)
    texts = [Texts("", "", {}, {}) for _ in evidence]
    for n, ev in enumerate(evidence):
        explain, draft = text_conversations(ev)
        if ev.history:
            jobs.append((n, "explanation", explain, EXPLAIN_TOKENS))
        else:  # nothing of the user's to cite: the template says why (popularity)
            texts[n].explanation, texts[n].outcomes["explanation"] = template_explanation(ev), "template"
        jobs.append((n, "draft", draft, DRAFT_TOKENS))

    def verdict(n: int, kind: str, text: str):
        ev = evidence[n]
        allowed = [ev.item.title] + [h.title for h in ev.history]
        # An explanation cites what the user did; a draft is about the item, so names it.
        cite = [h.title for h in ev.history[:2]] if kind == "explanation" else [ev.item.title]
        return check.check(text, allowed, cite) if text else None

    pending = jobs
    for attempt, temperature in ((0, 0.0), (1, 0.7)):
        if not pending:
            break
        replies: list[str] = [""] * len(pending)
        for limit in sorted({m for *_, m in pending}):  # one engine call per length limit
            rows = [r for r, job in enumerate(pending) if job[3] == limit]
            for r, reply in zip(rows, generate([pending[r][2] for r in rows], limit, temperature)):
                replies[r] = reply
        retry = []
        for (n, kind, conv, limit), reply in zip(pending, replies):
            text = clean(reply)
            v = verdict(n, kind, text)
            if v is not None and v.ok:
                setattr(texts[n], kind, text)
                texts[n].outcomes[kind] = "llm" if attempt == 0 else "regenerated"
                continue
            if attempt == 0:
                texts[n].first_try_failures[kind] = v.reason if v else "empty"
            retry.append((n, kind, conv, limit))
        pending = retry
    for n, kind, _, _ in pending:
        ev = evidence[n]
        setattr(texts[n], kind, template_explanation(ev) if kind == "explanation" else template_draft(ev))
        texts[n].outcomes[kind] = "fallback"
    return texts


def template_texts(evidence: Sequence[Evidence]) -> list[Texts]:
    """Texts without the LLM (degraded mode)."""
    return [Texts(template_explanation(ev), template_draft(ev), {"explanation": "template", "draft": "template"}, {})
            for ev in evidence]

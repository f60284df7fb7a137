"""`muse eval --stage texts`: the ways of writing a pick's texts, measured on the same picks
(issue 24).

For seeded users of the store Muse serves, the service plans each answer (retrieval, picks,
evidence, text jobs) and the same jobs go to the engine once per way of decoding:

- ``free``: free decoding under the sentence grammar alone (the way before issue 24);
- ``facts' phrases``: the continuation made of runs of the facts' own words
  (``engine.span_grammar``; what the service does now);
- ``adapter``: the same, written by a text adapter (``adapter=NAME``, served as LoRA beside the
  base model: the held-out comparison of ``muse finetune promote-text``).

Each result goes through the service's own ``TextPlan.accept`` (its checks, the support check
among them). Reported per way: the support measure (``support.support``) of every text the
model wrote whole, before any check (unsupported-word rate, share of texts with any, content
words per text), what the checks refused by reason, what is shown, the engine's seconds; and
per pick its texts side by side with the template. ``picks`` keeps only the texts of those
items (the held-out picks of a text adapter's data). A text asked again (the same pick, kind and
start: a user drawn twice) is measured once, so the paired comparison counts distinct texts.
Each text's informativeness
(``support.informativeness``, 0 for a refused one) is kept per way, paired by text.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter

WAYS = ("free", "facts' phrases")


def run_text_eval(
    agent,
    engine,
    answers: int = 20,
    k: int = 5,
    seed: int = 0,
    ways: tuple[str, ...] = WAYS,
    adapter: str | None = None,
    picks=None,
) -> dict:
    """``{"answers", "ways": {way: {...}}, "samples": [...], "informativeness": {way: [...]}}``
    over ``answers`` planned answers of ``k`` picks (module docstring). ``agent``: a
    ``MuseAgent`` over the served store; ``engine``: the LLM engine (vLLM for the grammar);
    ``ways``: of "free", "facts' phrases", "adapter"; ``adapter``: the registered adapter of the
    "adapter" way; ``picks``: a predicate on item ids, the picks measured (default: all). Raises
    ``ValueError`` when the store has no users or "adapter" is asked without one."""
    from agent.llm.engine import TextResult
    from agent.pipeline.answer import Ask
    from agent.pipeline.generation import TextPlan, template_draft, template_explanation
    from agent.pipeline.support import informativeness, support
    from agent.pipeline.text_facts import shown_facts

    users = sorted({e.user_id for e in agent.store.events()})
    if not users:
        raise ValueError("no users in the event store: muse eval --stage texts plans answers for its users")
    if "adapter" in ways and not adapter:
        raise ValueError("the 'adapter' way needs an adapter name")
    rng = random.Random(seed)
    make = {
        "free": lambda job: dataclasses.replace(job, spans=()),
        "facts' phrases": lambda job: job,
        "adapter": lambda job: dataclasses.replace(job, adapter=adapter),
    }
    stats = {way: Counter() for way in ways}
    informative: dict[str, list[float]] = {way: [] for way in ways}
    asked: set[tuple[str, str, str]] = set()  # (pick, kind, Muse's start): a text already measured
    samples = []
    for n in range(answers):
        plan = agent.plan(Ask(rng.choice(users), k))
        texts, shown = plan.texts, {}
        keep = []
        for j, (pick, kind) in enumerate(texts.keys):
            job = (texts.evidence[pick].item.id, kind, texts.jobs[j].prefix)
            if (picks is None or picks(job[0])) and job not in asked:  # each text measured once
                keep.append(j)
                asked.add(job)
        if not keep:
            continue
        for way in ways:
            mine = TextPlan(texts.evidence, texts.check, texts.categories)  # the service's own accept()
            mine.keys = [mine.keys[j] for j in keep]
            mine.jobs = [make[way](mine.jobs[j]) for j in keep]
            started = time.perf_counter()
            results = dict(engine.complete(mine.jobs, time.monotonic() + 300))
            s = stats[way]
            s["seconds"] += time.perf_counter() - started
            for j, (pick, kind) in enumerate(mine.keys):
                result = results.get(j, TextResult("", False))
                s["texts"] += 1
                if result.complete:  # what the model wrote, before any check
                    measured = support(result.text, shown_facts(mine.evidence[pick], kind))
                    s["written"] += 1
                    s["words"] += len(measured.words)
                    s["unsupported"] += len(measured.unsupported)
                    s["with_unsupported"] += bool(measured.unsupported)
                mine.accept(j, result)
                if mine.texts[pick].outcomes[kind] == "llm":
                    s["shown"] += 1
                    shown[(pick, kind, way)] = getattr(mine.texts[pick], kind)
                    added = shown[(pick, kind, way)].removeprefix(mine.jobs[j].prefix)  # Muse's start
                    informative[way].append(informativeness(added, shown_facts(mine.evidence[pick], kind)))
                else:
                    why = mine.texts[pick].rejected[kind].split(":")[0]
                    s[f"refused: {why}"] += 1
                    shown[(pick, kind, way)] = f"(refused, {why}) {result.text}"
                    informative[way].append(0.0)
        for pick, ev in enumerate(texts.evidence):
            template = {"explanation": template_explanation(ev), "draft": template_draft(ev)}
            for kind in ("explanation", "draft"):
                if (pick, kind, ways[0]) in shown:
                    row = {"pick": ev.item.title, "kind": kind, "template": template[kind]}
                    samples.append(row | {way: shown[(pick, kind, way)] for way in ways})
    return {
        "answers": answers,
        "k": k,
        "seed": seed,
        "ways": {w: _summary(s) | {"informativeness": _mean(informative[w])} for w, s in stats.items()},
        "samples": samples,
        "informativeness": informative,
    }


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _summary(s: Counter) -> dict:
    return {
        "texts": s["texts"],
        "written_whole": s["written"],
        "content_words": s["words"],
        "unsupported_word_rate": round(s["unsupported"] / s["words"], 4) if s["words"] else None,
        "texts_with_unsupported_share": round(s["with_unsupported"] / s["written"], 4) if s["written"] else None,
        "content_words_per_text": round(s["words"] / s["written"], 1) if s["written"] else None,
        "refused": {k.removeprefix("refused: "): v for k, v in sorted(s.items()) if k.startswith("refused: ")},
        "shown": s["shown"],
        "engine_s": round(s["seconds"], 1),
    }

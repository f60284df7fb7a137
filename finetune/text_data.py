"""`muse finetune text-data`: training data for a text adapter, bootstrapped from the model's
own samples (rejection-sampling self-distillation; issue 24, item 3).

No reader has rated a text yet, so the data comes from the base model: for seeded users of the
served store, Muse plans answers as it serves them (retrieval, picks, evidence, text jobs), and
each text job is written ``samples`` times at ``temperature`` besides once greedily (the served
way). Each candidate goes through the service's own checks (``generation.rejection``, the support
measure among them); of those that pass, the most informative one (``support.informativeness``:
supported facts per word) becomes the pick's target, and the greedy text is the baseline it is
chosen over. The same rule as STaR / rejection-sampling fine-tuning (Zelikman et al., "STaR:
Bootstrapping Reasoning With Reasoning", NeurIPS 2022; Touvron et al., "Llama 2", 2023, §3.2.2):
sample, keep what a checker accepts, train on it.

Rows (``text_sft_{train,eval}.jsonl``, the format ``muse finetune train --method text_sft``
reads, the same a liked text gets from ``build-data``): ``{"prompt": [messages], "prefix":
Muse's start, "completion": the continuation, "item_id", "kind"}``. Split by pick: a pick whose
id hashes into ``eval_share`` is never trained on (``held_out_items``); ``muse finetune
promote-text`` compares adapters on those picks only. ``report.json`` says how many candidates
were written, refused (by reason) and kept, and the held-out item ids.

    muse finetune text-data --out .muse/text-data --answers 150 --samples 4
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TextDataConfig:
    out: Path = field(metadata={"help": "folder for text_sft_{train,eval}.jsonl and report.json"})
    answers: int = field(default=150, metadata={"help": "answers planned (k picks each) for seeded users"})
    k: int = field(default=5, metadata={"help": "picks per answer"})
    samples: int = field(default=4, metadata={"help": "sampled candidates per text, besides the greedy one"})
    temperature: float = field(default=0.9, metadata={"help": "sampling temperature of the candidates"})
    eval_share: float = field(default=0.2, metadata={"help": "share of picks (by id hash) held out for promotion"})
    seed: int = field(default=0, metadata={"help": "seed of the users drawn and of the sampling"})


def held_out(item_id: str, eval_share: float) -> bool:
    """Whether pick ``item_id`` is held out (stable across runs and machines: a hash of the id)."""
    return int(hashlib.sha1(item_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < eval_share


def choose(candidates: list[tuple[str, str, float]]) -> tuple[str | None, str]:
    """The target among ``candidates`` ``(text, why refused or "", informativeness)``, the first
    being the greedy one: the passing candidate of highest informativeness (the earliest on a
    tie, so the greedy text wins ties), or None when none passes; and why ("kept", "greedy
    kept", "none passed")."""
    passing = [(info, -n, text) for n, (text, why, info) in enumerate(candidates) if not why]
    if not passing:
        return None, "none passed"
    _, minus_n, text = max(passing)
    return text, "greedy kept" if minus_n == 0 else "kept"


def bootstrap(agent, engine, cfg: TextDataConfig) -> dict:
    """Write the rows (module docstring) and return the report. ``agent``: a ``MuseAgent`` over
    the served store; ``engine``: an LLM engine that samples (vLLM, or the in-process one).
    Raises ``ValueError`` when the store has no users or ``cfg`` is out of range. Files are
    written under temporary names and renamed at the end: a failed run leaves none."""
    from agent.pipeline.answer import Ask
    from agent.pipeline.generation import rejection
    from agent.pipeline.support import informativeness
    from agent.pipeline.text_facts import shown_facts
    from agent.pipeline.text_quality import cut_repeat

    if cfg.samples < 1 or not 0 <= cfg.temperature <= 2 or not 0 < cfg.eval_share < 1 or cfg.answers < 1:
        raise ValueError("need samples >= 1, 0 <= temperature <= 2, 0 < eval_share < 1 and answers >= 1")
    users = sorted({e.user_id for e in agent.store.events()})
    if not users:
        raise ValueError("no users in the event store: text-data plans answers for its users")
    rng = random.Random(cfg.seed)
    counts, rows, seen = Counter(), {"train": [], "eval": []}, set()
    gain = []  # informativeness of the kept text minus the greedy one's, where both passed
    started = time.perf_counter()
    for a in range(cfg.answers):
        plan = agent.plan(Ask(rng.choice(users), cfg.k)).texts
        jobs = []
        for j, job in enumerate(plan.jobs):
            pick, kind = plan.keys[j]
            if (plan.evidence[pick].item.id, kind) in seen:  # a pick asked about again: its first rows stand
                continue
            jobs.append((j, job))
            jobs += [
                (j, dataclasses.replace(job, temperature=cfg.temperature, seed=cfg.seed * 100_003 + a * 1_000 + s))
                for s in range(cfg.samples)
            ]
        results: dict[int, list] = {}
        for n, result in engine.complete([job for _, job in jobs], time.monotonic() + 600):
            results.setdefault(jobs[n][0], []).append((n, result))
        for j, job in enumerate(plan.jobs):
            pick, kind = plan.keys[j]
            ev = plan.evidence[pick]
            if j not in results:
                continue
            seen.add((ev.item.id, kind))
            facts = shown_facts(ev, kind)
            candidates = []
            for _, result in sorted(results.get(j, [])):
                if job.spans:
                    result = dataclasses.replace(result, text=cut_repeat(result.text))
                why = rejection(ev, kind, result, plan.check, plan.categories)
                counts["candidates"] += 1
                counts[f"refused: {why.split(':')[0]}" if why else "passed"] += 1
                candidates.append((result.text, why, informativeness(result.text, facts)))
            if not candidates:
                continue
            text, how = choose(candidates)
            counts[how] += 1
            if text is None:
                continue
            if not candidates[0][1]:
                gain.append(max(info for _, why, info in candidates if not why) - candidates[0][2])
            split = "eval" if held_out(ev.item.id, cfg.eval_share) else "train"
            rows[split].append(
                {"prompt": job.messages, "prefix": job.prefix, "completion": text, "item_id": ev.item.id, "kind": kind}
            )
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, chosen in rows.items():
        name = f"text_sft_{split}.jsonl"
        tmp = out / f".{name}.tmp"
        tmp.write_text("".join(json.dumps(r) + "\n" for r in chosen))
        tmp.replace(out / name)
        files[name] = len(chosen)
    data_hash = hashlib.sha1(json.dumps(rows["train"], sort_keys=True).encode()).hexdigest()[:16]
    report = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(cfg).items()},
        "files": files,
        "counts": dict(sorted(counts.items())),
        "informativeness_gain_over_greedy": round(sum(gain) / len(gain), 4) if gain else None,
        "held_out_items": sorted({r["item_id"] for r in rows["eval"]}),
        "data_hash": data_hash,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report

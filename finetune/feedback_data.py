"""Logged impressions and feedback -> training data in TRL's formats (``muse finetune build-data``).

An impression is what Muse showed a user, with the 20 candidates the ranker ordered (retrieval
order). The events that answer it (same ``impression_id``) say which shown items the user
engaged with and which they turned down. From each impression:

- **SFT** rows (``{"messages": [...]}``): the ranking prompt over the impression's candidates,
  exactly as the ranker saw it, answered with the engaged item's label;
- **DPO** pairs (``{"prompt", "chosen", "rejected"}``, conversational): the same prompt, the
  engaged item's label chosen over the label of an item shown in the same impression and
  skipped or disliked;
- **KTO** rows (``{"prompt", "completion", "label"}``): unpaired thumbs, a like (``True``) or a
  dislike (``False``) on a shown item.

And from thumbs on the texts Muse wrote (``explanation_like``, ``draft_dislike``, ...; each
impression keeps its texts with their prompts):

- **text KTO** rows: the prompt that asked for the explanation or draft, the text as shown,
  and the thumb;
- **text DPO** pairs: for one prompt, a liked text chosen over a disliked one;
- **text SFT** rows: a liked text the model wrote, as ``muse finetune text-data`` writes its
  rows (``{"prompt", "prefix", "completion"}``: the continuation after Muse's start), so
  ``muse finetune train --method text_sft`` takes real thumbs and bootstrapped data alike.

Rules:

- Split by time: impressions created before the cutoff, and answered before it, train; the
  rest evaluate (an impression shown before the cutoff and answered after it evaluates).
- Identical rows are kept once.
- Minimum evidence: the user needs ``min_history`` liked items before the impression.
- Leakage guard: no training row comes from an event at or after the cutoff, and no training
  row answers with, or (a DPO pair) rejects, an evaluation item (the ``held_out`` (user, item)
  pairs, e.g. each user's protocol validation and test items). Rows that would leak are dropped and counted, and
  ``check_no_leak`` verifies the written training rows again before anything is saved.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from agent.catalog import TEXT_RATING_KINDS, Impression, Interaction, Item, reaction
from agent.pipeline.ranker import LABELS, PromptConfig, RankRequest, rank_conversation
from agent.store.history import user_sequences


class LeakError(AssertionError):
    """A training row carries evaluation data."""


@dataclass
class Row:
    kind: str  # "sft", "dpo", "kto", "text_kto", "text_dpo" or "text_sft"
    split: str  # "train" or "eval"
    user_id: str
    item_id: str  # the answer's item (DPO: the chosen one)
    created_at: float  # the impression's time
    data: dict = field(default_factory=dict)
    rejected_id: str | None = None  # DPO: the rejected item, which may not be an evaluation item either

    def key(self) -> str:
        return hashlib.sha1(json.dumps([self.kind, self.data], sort_keys=True).encode()).hexdigest()


@dataclass
class BuildConfig:
    cutoff: float | None = None  # impressions at/after this time evaluate; None: by eval_fraction
    eval_fraction: float = 0.2  # newest share of impressions held out when cutoff is None
    min_history: int = 3
    prompt: PromptConfig = field(default_factory=PromptConfig)


def time_cutoff(impressions: Sequence[Impression], eval_fraction: float) -> float:
    times = sorted(i.created_at for i in impressions)
    if not times:
        return float("inf")
    return times[min(len(times) - 1, int(len(times) * (1 - eval_fraction)))]


def build_rows(
    impressions: Sequence[Impression],
    events: Sequence[Interaction],
    items: dict[str, Item],
    held_out: set[tuple[str, str]],
    cutoff: float,
    config: BuildConfig,
) -> tuple[list[Row], Counter]:
    answers: dict[str, list[Interaction]] = {}
    for e in events:
        if e.impression_id:
            answers.setdefault(e.impression_id, []).append(e)
    by_user: dict[str, list[Interaction]] = {}
    for e in events:
        by_user.setdefault(e.user_id, []).append(e)
    rows, skipped = [], Counter()
    for imp in impressions:
        user, reacted = imp.user_id, answers.get(imp.id, [])
        if not reacted:
            continue
        split = "train" if imp.created_at < cutoff and all(e.timestamp < cutoff for e in reacted) else "eval"
        for item, data in text_thumbs(imp, reacted):
            if split == "train" and (user, item) in held_out:
                skipped["held_out_item"] += 1
            else:
                rows.append(Row("text_kto", split, user, item, imp.created_at, data))
        for item, data in liked_texts(imp, reacted):
            if split == "train" and (user, item) in held_out:
                skipped["held_out_item"] += 1
            else:
                rows.append(Row("text_sft", split, user, item, imp.created_at, data))
        history = user_sequences(
            [e for e in by_user.get(user, []) if e.timestamp < imp.created_at and e.impression_id != imp.id]
        ).get(user, [])
        if len(history) < config.min_history:
            skipped["too_little_history"] += 1
            continue
        candidates = [i for i in (imp.candidates or imp.item_ids) if i in items][: len(LABELS)]
        request = RankRequest.of(history, candidates, [0.0] * len(candidates), items, config.prompt)
        prompt = rank_conversation(request.history, request.candidates, config.prompt)
        label = {item: LABELS[n] for n, item in enumerate(candidates)}
        opinion = {e.item_id: reaction(e) for e in sorted(reacted, key=lambda e: e.timestamp)}
        pos = [i for i, r in opinion.items() if r == "pos" and i in label]
        neg = [i for i, r in opinion.items() if r == "neg" and i in label]

        answer = {item: [{"role": "assistant", "content": label[item]}] for item in label}
        made = [("sft", item, None, {"messages": prompt + answer[item]}) for item in pos]
        made += [
            ("dpo", item, bad, {"prompt": prompt, "chosen": answer[item], "rejected": answer[bad]})
            for item in pos
            for bad in neg
        ]
        made += [
            ("kto", e.item_id, None, {"prompt": prompt, "completion": answer[e.item_id], "label": e.kind == "like"})
            for e in reacted
            if e.kind in ("like", "dislike") and e.item_id in label
        ]
        for kind, item, bad, data in made:
            if split == "train" and ((user, item) in held_out or (user, bad) in held_out):
                skipped["held_out_item"] += 1  # a held-out item chosen or rejected: either teaches it
            else:
                rows.append(Row(kind, split, user, item, imp.created_at, data, rejected_id=bad))
    return dedupe(rows + text_pairs(rows), skipped), skipped


def text_thumbs(impression: Impression, reacted: Sequence[Interaction]) -> list[tuple[str, dict]]:
    """KTO rows from thumbs on an explanation or a draft: the prompt that asked for the text,
    the text as shown, and whether the user liked it."""
    out = []
    for e in reacted:
        if e.kind not in TEXT_RATING_KINDS:
            continue
        shown = impression.shown_text(e.item_id, e.kind.split("_")[0])
        if shown:  # impressions logged before texts were stored have none
            out.append(
                (
                    e.item_id,
                    {
                        "prompt": shown["prompt"],
                        "completion": [{"role": "assistant", "content": shown["text"]}],
                        "label": e.kind.endswith("_like"),
                    },
                )
            )
    return out


def liked_texts(impression: Impression, reacted: Sequence[Interaction]) -> list[tuple[str, dict]]:
    """Text SFT rows from thumbs up on texts the model wrote (``source`` "llm", logged with the
    start Muse gave it): the prompt, the start and the model's continuation."""
    out = []
    for e in reacted:
        if e.kind not in TEXT_RATING_KINDS or not e.kind.endswith("_like"):
            continue
        shown = impression.shown_text(e.item_id, e.kind.split("_")[0]) or {}
        prefix = shown.get("prefix")
        if shown.get("source") == "llm" and prefix and shown["text"].startswith(prefix):
            out.append(
                (e.item_id, {"prompt": shown["prompt"], "prefix": prefix, "completion": shown["text"][len(prefix) :]})
            )
    return out


def text_pairs(rows: Sequence[Row]) -> list[Row]:
    """DPO pairs from texts rated for the same prompt: a liked text over a disliked one."""
    by_prompt: dict[str, list[Row]] = {}
    for r in rows:
        if r.kind == "text_kto":
            by_prompt.setdefault(json.dumps(r.data["prompt"], sort_keys=True), []).append(r)
    pairs = []
    for group in by_prompt.values():
        for good in (r for r in group if r.data["label"]):
            for bad in (r for r in group if not r.data["label"]):
                if good.data["completion"] != bad.data["completion"]:
                    split = "train" if good.split == bad.split == "train" else "eval"
                    pairs.append(
                        Row(
                            "text_dpo",
                            split,
                            good.user_id,
                            good.item_id,
                            max(good.created_at, bad.created_at),
                            {
                                "prompt": good.data["prompt"],
                                "chosen": good.data["completion"],
                                "rejected": bad.data["completion"],
                            },
                        )
                    )
    return pairs


def dedupe(rows: Iterable[Row], skipped: Counter) -> list[Row]:
    seen: set[str] = set()
    out = []
    for r in rows:
        if r.key() in seen:
            skipped["duplicate"] += 1
            continue
        seen.add(r.key())
        out.append(r)
    return out


def check_no_leak(rows: Iterable[Row], held_out: set[tuple[str, str]], cutoff: float) -> None:
    for r in rows:
        if r.split != "train":
            continue
        if (r.user_id, r.item_id) in held_out:
            raise LeakError(f"training {r.kind} row of user {r.user_id!r} answers with evaluation item {r.item_id!r}")
        if (r.user_id, r.rejected_id) in held_out:
            raise LeakError(f"training {r.kind} row of user {r.user_id!r} rejects evaluation item {r.rejected_id!r}")
        if r.created_at >= cutoff:
            raise LeakError(f"training {r.kind} row of user {r.user_id!r} is from after the cutoff")


def write_rows(rows: Sequence[Row], out_dir: Path) -> dict[str, int]:
    """``{kind}_{split}.jsonl`` files (written to a temporary name, then renamed: a failed build
    leaves no half file); returns the count per file. Each row names its ``user_id`` (the
    trainers drop it), so forgetting a user can find their rows (``agent.store.remove_user_rows``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for kind in ("sft", "dpo", "kto", "text_dpo", "text_kto", "text_sft"):
        for split in ("train", "eval"):
            name = f"{kind}_{split}.jsonl"
            chosen = [r for r in rows if r.kind == kind and r.split == split]
            tmp = out_dir / f".{name}.tmp"
            tmp.write_text("".join(json.dumps({"user_id": r.user_id, **r.data}) + "\n" for r in chosen))
            tmp.replace(out_dir / name)
            counts[name] = len(chosen)
    return counts


def held_out_pairs(sequences: dict[str, Sequence[str]]) -> set[tuple[str, str]]:
    """(user, item) for each sequence's last two items: the validation and test items of the
    evaluation protocol (chronological leave-one-out), which training must never see."""
    return {(user, item) for user, seq in sequences.items() for item in seq[-2:]}


def protocol_held_out(events: Sequence[Interaction]) -> set[tuple[str, str]]:
    """The held-out pairs of the users' liked-item sequences in the store."""
    return held_out_pairs(user_sequences(list(events)))


def build_data(
    store,
    out_dir: Path,
    config: BuildConfig | None = None,
    held_out: set[tuple[str, str]] | None = None,
    impression_ids: set[str] | None = None,
) -> dict:
    """Build, guard and write the files; returns the report (also saved as report.json).
    ``impression_ids`` limits the rows to those impressions (e.g. the newest round of feedback)."""
    config = config or BuildConfig()
    items = {it.id: it for it in store.items()}
    events, impressions = store.events(), store.impressions()
    if impression_ids is not None:
        impressions = [i for i in impressions if i.id in impression_ids]
    held_out = protocol_held_out(events) if held_out is None else held_out
    cutoff = config.cutoff if config.cutoff is not None else time_cutoff(impressions, config.eval_fraction)
    rows, skipped = build_rows(impressions, events, items, held_out, cutoff, config)
    check_no_leak(rows, held_out, cutoff)
    store.add_export(Path(out_dir))  # first, so a user forgotten during the build is scrubbed here too
    counts = write_rows(rows, Path(out_dir))
    data_hash = hashlib.sha1("".join(r.key() for r in rows).encode()).hexdigest()[:16]
    report = {
        "impressions": len(impressions),
        "cutoff": cutoff,
        "files": counts,
        "skipped": dict(skipped),
        "data_hash": data_hash,
        "prompt": asdict(config.prompt),
    }
    (Path(out_dir) / "report.json").write_text(json.dumps(report, indent=2))
    return report

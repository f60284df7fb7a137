"""`muse finetune promote`: judge a candidate ranker adapter against the serving one, and put
it into service only if it is better.

Evaluations (each one that is asked for must favour the candidate):

- ``--feedback DIR``: held-out events, the ``sft_eval.jsonl`` rows of a ``build-data`` folder
  (impressions after the time cutoff): where each adapter alone ranks the item the user
  engaged with, among that impression's candidates.
- ``--data PATH``: the design.md protocol on the validation users (never test), as in
  ``muse eval --stage rerank``: candidates reordered by each adapter fused with retrieval, the
  fusion weight chosen on validation for each adapter.

The candidate is promoted when its N@10 is higher on every evaluation; otherwise it is refused
and the numbers say why. Promotion is recorded in the registry (``promoted.json``: the serving
adapter and every promotion), which a restarted service reads. With ``--url`` the running
service also switches at once: it loads the adapter into its vLLM server at runtime (no
restart) and sends traffic to it, or with ``--split`` divides users between the old and the new
adapter by the A/B hash (``muse finetune ab-report`` then compares the arms).

    muse finetune promote --candidate rank-dpo-1 --feedback .muse/feedback --url http://127.0.0.1:8000
    muse finetune promote --candidate loop-r2 --data ../shared/data/ml-latest-small --work-dir .muse/loop-ml
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

from agent.llm.engine import PROMOTED_FILE

_LABEL_LINE = re.compile(r"^([A-T])\. ", re.MULTILINE)


def held_out_events(engine, adapters: dict[str, str | None], rows: list[dict]) -> dict[str, dict]:
    """N@10, MRR and R@1 of the engaged item's label under each adapter's label distribution
    (``None``: the base model), plus retrieval order (the label order) for reference."""
    from agent.ranker import LABELS, order
    from retrieval.metrics import summarize

    prompts = [row["messages"][:-1] for row in rows]
    answers = [LABELS.index(row["messages"][-1]["content"]) for row in rows]
    sizes = [len(_LABEL_LINE.findall(p[-1]["content"])) for p in prompts]
    ranks = {"retrieval": [a + 1 for a in answers]}
    for name, adapter in adapters.items():
        ranks[name] = [0] * len(rows)
        for size in set(sizes):
            at = [n for n, s in enumerate(sizes) if s == size]
            got = engine.label_logprobs([prompts[n] for n in at], LABELS[:size], adapter)
            for n, lp in zip(at, got):
                ranks[name][n] = order(lp).index(answers[n]) + 1
    out = {}
    for name, r in ranks.items():
        m = summarize(r)
        out[name] = {"N@10": round(m["N@10"], 4), "M@10": round(m["M@10"], 4), "R@1": round(sum(x == 1 for x in r)
                                                                                         / len(r), 4)}
    return {"rows": len(rows), **out}


def protocol_validation(engine, adapters: dict[str, str | None], prompt, users, items) -> dict[str, dict]:
    """Validation N@10 of retrieval fused with each adapter (weight chosen on validation)."""
    from agent.rerank_eval import choose_weight, llm_rows, split_report

    out = {}
    for name, adapter in adapters.items():
        llm = llm_rows(engine, prompt, users, items, adapter)
        weight = choose_weight(users, llm)
        report = split_report(users, {"tuned": llm}, weight)
        out[name] = {"N@10": round(report["metrics"]["N@10"], 4), "fusion_weight": weight,
                     "retrieval_N@10": round(report["rows"]["retrieval"]["all_users"]["N@10"], 4)}
    return {"users": len(users), **out}


def decide(evaluations: dict[str, dict]) -> tuple[bool, str]:
    """Promote only if the candidate's N@10 beats the current adapter's on every evaluation."""
    if not evaluations:
        raise ValueError("nothing to judge on: pass --feedback DIR and/or --data PATH")
    verdicts = []
    for name, result in evaluations.items():
        cand, cur = result["candidate"]["N@10"], result["current"]["N@10"]
        verdicts.append((cand > cur, f"{name}: candidate N@10 {cand:.4f} vs current {cur:.4f}"))
    better = all(ok for ok, _ in verdicts)
    return better, ("better on every evaluation; " if better else "not better; ") + "; ".join(t for _, t in verdicts)


def record(registry: Path, candidate: str, previous: str | None, evaluations: dict, split: bool = False) -> None:
    """Append the promotion to ``promoted.json``; without ``split`` the candidate becomes the
    serving adapter (a split lives in the running service only, or in ``MUSE_AB_ADAPTERS``)."""
    file = Path(registry) / PROMOTED_FILE
    log = json.loads(file.read_text()) if file.exists() else {"serving": previous, "history": []}
    if not split:
        log["serving"] = candidate
    log["history"].append({"adapter": candidate, "previous": previous, "split": split, "at": time.time(),
                           "evaluations": evaluations})
    tmp = file.with_name(f".{file.name}.tmp")
    tmp.write_text(json.dumps(log, indent=2))
    tmp.replace(file)


def promote(settings, candidate: str, feedback: Path | None = None, data: Path | None = None,
            work_dir: Path | None = None, url: str | None = None, split: bool = False,
            say: Callable[[str], None] = print) -> dict:
    from agent.llm.engine import check_adapter
    from agent.llm.transformers_engine import TransformersEngine
    from agent.ranker import prompt_config_of

    registry = settings.adapters()
    check_adapter(candidate, registry)
    current = settings.ranker_adapter()
    if current == candidate:
        raise ValueError(f"{candidate!r} is already the serving adapter")
    if feedback is None and data is None:
        raise ValueError("nothing to judge on: pass --feedback DIR and/or --data PATH")
    rows = []
    if feedback is not None:
        file = Path(feedback) / "sft_eval.jsonl"
        if not file.exists():
            raise ValueError(f"{feedback} has no sft_eval.jsonl: run `muse finetune build-data --out {feedback}`")
        rows = [json.loads(line) for line in file.read_text().splitlines() if line]
        if not rows:
            raise ValueError(f"{file} is empty: no held-out feedback to judge on yet")
    adapters = {"current": current, "candidate": candidate}
    engine = TransformersEngine(settings.model_path, {n: registry[n] for n in adapters.values() if n},
                                dtype=settings.llm_dtype)
    evaluations = {}
    try:
        if rows:
            say(f"held-out events: {len(rows)} rows")
            evaluations["held_out_events"] = held_out_events(engine, adapters, rows)
        if data is not None:
            from agent.evaluate import prepare
            from agent.rerank_eval import protocol_candidates

            users = protocol_candidates(data, work_dir or settings.data_dir / "promote", say=say)["validation"]
            items = {item.id: item for item in prepare(data).items}
            say(f"protocol validation: {len(users)} users")
            evaluations["protocol_validation"] = protocol_validation(
                engine, adapters, prompt_config_of(registry[candidate]), users, items)
    finally:
        engine.close()
    better, reason = decide(evaluations)
    result = {"promoted": better, "current": current, "candidate": candidate, "reason": reason,
              "evaluations": evaluations}
    if better:
        record(settings.adapters_dir, candidate, current, evaluations, split)
        if url:
            import httpx

            response = httpx.post(f"{url.rstrip('/')}/v1/adapters/serve", json={"name": candidate, "split": split},
                                  timeout=120)
            if response.status_code != 200:
                raise ValueError(f"promoted in the registry, but the service at {url} answered "
                                 f"{response.status_code}: {response.text[:300]}")
            result["service"] = response.json()
    return result

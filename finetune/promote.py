"""`muse finetune promote`: judge a candidate ranker adapter against the serving one, and put
it into service only if it is better.

Evaluations (each one that is asked for must favour the candidate):

- ``--feedback DIR``: held-out events, the ``sft_eval.jsonl`` rows of a ``build-data`` folder
  (impressions after the time cutoff): where each adapter alone ranks the item the user
  engaged with, among that impression's candidates.
- ``--data PATH``: the design.md protocol on the validation users (never test), as in
  ``muse eval --stage rerank``: candidates reordered by each adapter fused with retrieval, the
  fusion weight chosen on validation for each adapter.

The candidate is promoted when its N@10 gain over the serving adapter, paired by row or user,
is significant on every evaluation (z >= 1.645, one-sided 95%); otherwise it is refused and the
numbers say why. A promoted adapter's manifest gets the fusion weight serving will use, on every
path: the protocol's validated weight with ``--data``, else the weight validated on the held-out
events (by the same rule; 0 when fusing does not beat retrieval order there). Promotion is
recorded in the registry (``promoted.json``: the serving adapter and every promotion), which a
restarted service reads. With ``--url`` the running
service also switches at once: it loads the adapter into its vLLM server at runtime (no
restart) and sends traffic to it, or with ``--split`` divides users between the old and the new
adapter by the A/B hash (``muse finetune ab-report`` then compares the arms).

    muse finetune promote --candidate rank-dpo-1 --feedback .muse/feedback --url http://127.0.0.1:8000
    muse finetune promote --candidate loop-r2 --data ../shared/data/ml-latest-small --work-dir .muse/loop-ml
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from pathlib import Path

from agent.llm import registry
from agent.llm.hardware import resolve_dtype
from agent.llm.model_files import model_path
from agent.llm.registry import PROMOTED_FILE

logger = logging.getLogger(__name__)

_LABEL_LINE = re.compile(r"^([A-T])\. ", re.MULTILINE)


MIN_Z = 1.645  # one-sided 95%: the paired gain must be this many standard errors above zero


def paired(current: list[float], candidate: list[float]) -> dict:
    """Mean per-row gain of the candidate over the current adapter, its standard error and z
    (``report.paired_gain``)."""
    from agent.evaluation.report import paired_gain

    mean, se = paired_gain(current, candidate)
    z = mean / se if se > 0 else (math.inf if mean > 0 else 0.0)
    return {"gain": round(mean, 4), "se": round(se, 4), "z": round(z, 2) if math.isfinite(z) else z}


def held_out_events(engine, adapters: dict[str, str | None], rows: list[dict]) -> dict:
    """Where each adapter alone (``None``: the base model) ranks the engaged item's label among
    the impression's candidates, as N@10/M@10/R@1 over the rows, beside retrieval order as the
    reference, and the candidate's paired gain over the current adapter. Each adapter also gets
    the fusion weight serving would use, validated on these rows by the rule of
    ``muse eval --stage rerank`` (``agent.evaluation.rerank_eval.validated_weight``). The rows
    carry candidates in retrieval order but not their retrieval scores, so minus the position
    stands in for the score (noted in the evidence)."""
    from types import SimpleNamespace

    from agent.evaluation.rerank_eval import validated_weight
    from agent.pipeline.ranker import LABELS, order
    from retrieval.metrics import ndcg_at, summarize

    prompts = [row["messages"][:-1] for row in rows]
    answers = [LABELS.index(row["messages"][-1]["content"]) for row in rows]
    sizes = [len(_LABEL_LINE.findall(p[-1]["content"])) for p in prompts]
    ranks = {"retrieval": [a + 1 for a in answers]}
    # the rows as the weight rule reads users: candidates with scores, the target's 1-based rank
    as_users = [
        SimpleNamespace(candidates=[SimpleNamespace(score=-float(j)) for j in range(size)], rank=a + 1)
        for size, a in zip(sizes, answers)
    ]
    weights = {}
    for name, adapter in adapters.items():
        ranks[name], llm = [0] * len(rows), {}
        for size in set(sizes):
            at = [n for n, s in enumerate(sizes) if s == size]
            got = engine.label_logprobs([prompts[n] for n in at], LABELS[:size], adapter)
            for n, lp in zip(at, got):
                ranks[name][n] = order(lp).index(answers[n]) + 1
                llm[n] = lp
        weight, evidence = validated_weight(as_users, llm)
        evidence["retrieval_score"] = "minus the candidate's position (the logged rows hold no retrieval scores)"
        weights[name] = (weight, evidence)
    out: dict = {"rows": len(rows)}
    for name, r in ranks.items():
        m = summarize(r)
        out[name] = {
            "N@10": round(m["N@10"], 4),
            "M@10": round(m["M@10"], 4),
            "R@1": round(sum(x == 1 for x in r) / len(r), 4),
        }
        if name in weights:
            out[name]["fusion_weight"], out[name]["fusion_weight_validation"] = weights[name]
    out["paired"] = paired([ndcg_at(r, 10) for r in ranks["current"]], [ndcg_at(r, 10) for r in ranks["candidate"]])
    return out


def protocol_validation(engine, adapters: dict[str, str | None], prompts: dict, users, items) -> dict:
    """Validation N@10 of retrieval fused with each adapter (the weight validated as serving
    would use it, ``agent.evaluation.rerank_eval.validated_weight``; each adapter asked with the prompt
    settings it was trained with), and the candidate's paired gain per user."""
    from agent.evaluation.rerank_eval import fused_orders, llm_rows, ranks_after, validated_weight
    from retrieval.metrics import ndcg_at, summarize

    out: dict = {"users": len(users)}
    per_user = {}
    for name, adapter in adapters.items():
        llm = llm_rows(engine, prompts[name], users, items, adapter)
        weight, evidence = validated_weight(users, llm)
        ranks = ranks_after(users, fused_orders(users, llm, weight))  # None: the target is not a candidate
        per_user[name] = [ndcg_at(r, 10) for r in ranks]
        out[name] = {
            "N@10": round(summarize(ranks)["N@10"], 4),
            "fusion_weight": weight,
            "fusion_weight_validation": evidence,
        }
    out["retrieval_N@10"] = round(summarize([u.rank for u in users])["N@10"], 4)
    out["paired"] = paired(per_user["current"], per_user["candidate"])
    return out


def decide(evaluations: dict[str, dict], min_z: float = MIN_Z) -> tuple[bool, str]:
    """Promote only if the candidate's paired N@10 gain over the current adapter is at least
    ``min_z`` standard errors above zero on every evaluation: a gain inside the noise is not
    an improvement (on 150 users one standard error of N@10 is several points)."""
    if not evaluations:
        raise ValueError("nothing to judge on: pass --feedback DIR and/or --data PATH")
    verdicts = []
    for name, result in evaluations.items():
        cand, cur, p = result["candidate"]["N@10"], result["current"]["N@10"], result["paired"]
        ok = p["z"] >= min_z
        verdicts.append(
            (
                ok,
                (
                    f"{name}: candidate N@10 {cand:.4f} vs current {cur:.4f} (gain {p['gain']:+.4f}, "
                    f"se {p['se']:.4f}, z {p['z']} {'>=' if ok else '<'} {min_z})"
                ),
            )
        )
    better = all(ok for ok, _ in verdicts)
    return better, ("better on every evaluation; " if better else "not better; ") + "; ".join(t for _, t in verdicts)


def record(registry: Path, candidate: str, previous: str | None, evaluations: dict, split: bool = False) -> None:
    """Append the promotion to ``promoted.json``; without ``split`` the candidate becomes the
    serving adapter (a split lives in the running service only, or in ``MUSE_AB_ADAPTERS``)."""
    file = Path(registry) / PROMOTED_FILE
    log = json.loads(file.read_text()) if file.exists() else {"serving": previous, "history": []}
    if not split:
        log["serving"] = candidate
    log["history"].append(
        {"adapter": candidate, "previous": previous, "split": split, "at": time.time(), "evaluations": evaluations}
    )
    from agent.evaluation.rerank_eval import write_json

    write_json(file, log)


def promote(
    settings,
    candidate: str,
    feedback: Path | None = None,
    data: Path | None = None,
    work_dir: Path | None = None,
    url: str | None = None,
    split: bool = False,
) -> dict:
    from agent.llm.registry import check_adapter
    from agent.llm.transformers_engine import TransformersEngine
    from agent.pipeline.ranker import prompt_config_of

    registered = registry.adapters(settings)
    check_adapter(candidate, registered)
    current = registry.ranker_adapter(settings)
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
    engine = TransformersEngine(
        model_path(settings),
        {n: registered[n] for n in adapters.values() if n},
        dtype=resolve_dtype(settings.llm_dtype),
    )
    evaluations = {}
    try:
        if rows:
            logger.info(f"held-out events: {len(rows)} rows")
            evaluations["held_out_events"] = held_out_events(engine, adapters, rows)
        if data is not None:
            from agent.evaluation.rerank_eval import protocol_candidates
            from agent.evaluation.retrieval_eval import prepare

            users = protocol_candidates(data, work_dir or settings.data_dir / "promote")["validation"]
            items = {item.id: item for item in prepare(data).items}
            logger.info(f"protocol validation: {len(users)} users")
            prompts = {name: prompt_config_of(registered[a] if a else None) for name, a in adapters.items()}
            evaluations["protocol_validation"] = protocol_validation(engine, adapters, prompts, users, items)
    finally:
        engine.close()
    better, reason = decide(evaluations)
    result = {
        "promoted": better,
        "current": current,
        "candidate": candidate,
        "reason": reason,
        "evaluations": evaluations,
    }
    if better:
        # Serving reads the weight from the manifest: every promotion records one, from the
        # protocol's validation users when asked for, else from the held-out events.
        from agent.evaluation.rerank_eval import record_weight

        chosen = evaluations.get("protocol_validation", evaluations.get("held_out_events"))["candidate"]
        record_weight(registered[candidate], chosen["fusion_weight"], chosen["fusion_weight_validation"])
        result["fusion_weight"] = chosen["fusion_weight"]
        record(settings.adapters_dir, candidate, current, evaluations, split)
        if url:
            import httpx

            response = httpx.post(
                f"{url.rstrip('/')}/v1/adapters/serve",
                json={"name": candidate, "split": split},
                timeout=120,
                headers=settings.client_headers(),
            )
            if response.status_code != 200:
                raise ValueError(
                    f"promoted in the registry, but the service at {url} answered "
                    f"{response.status_code}: {response.text[:300]}"
                )
            result["service"] = response.json()
    return result

"""`muse finetune promote-text`: judge a text adapter against the base model, on picks its data
never trained on, and make it the serving one only if it is better. (A child of a serving text
adapter is judged against the base model too: comparing two adapters is not built yet.)

The comparison is ``muse eval --stage texts`` (``agent.evaluation.text_eval``) with two ways on
the same text jobs: "facts' phrases" (the base model, as served) and "adapter" (the candidate,
served as LoRA beside it), over the held-out picks of the candidate's ``text-data`` folder
(``text_data.held_out``). The candidate is promoted when all hold:

- its unsupported-word rate is no higher than the base model's (the support measure);
- its template share (texts not shown as written: refused by a check or not written whole) is
  no higher;
- its informativeness (supported facts per word, 0 for a refused text), paired by text, is
  higher by at least ``MIN_Z`` standard errors (one-sided 95%).

Promotion writes the registry's ``promoted_text.json`` (the serving text adapter and every
promotion), which ``registry.text_adapter`` reads when the service or ``muse llm serve`` starts:
the adapter is then merged into the served checkpoint. The comparison goes into the candidate's
``manifest.json`` (``held_out``) either way.

    muse finetune promote-text --candidate text-sft-1 --data .muse/text-data
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from agent.llm.registry import TEXT_PROMOTED_FILE, read_manifest

MIN_Z = 1.645  # one-sided 95%


def judge(report: dict) -> dict:
    """The verdict on a ``run_text_eval`` report with ways "facts' phrases" (base) and "adapter":
    ``{"promoted", "reason", "base", "adapter", "informativeness_gain", "se", "z", "n"}``.
    Raises ``ValueError`` when the two ways did not write the same texts."""
    from agent.evaluation.report import paired_gain

    base, cand = report["informativeness"]["facts' phrases"], report["informativeness"]["adapter"]
    if len(base) != len(cand):
        raise ValueError(f"the ways measured different texts ({len(base)} and {len(cand)})")
    if not base:
        return {"promoted": False, "reason": "no held-out picks were asked about", "n": 0}
    ways = report["ways"]
    figures = {}
    for way, key in (("facts' phrases", "base"), ("adapter", "adapter")):
        w = ways[way]
        figures[key] = {
            "unsupported_word_rate": w["unsupported_word_rate"] or 0.0,
            "template_share": round(1 - w["shown"] / w["texts"], 4) if w["texts"] else None,
            "informativeness": w["informativeness"],
            "refused": w["refused"],
            "engine_s": w["engine_s"],  # the adapter's way runs as LoRA beside the base model
        }
    mean, se = paired_gain(base, cand)
    z = mean / se if se > 0 else (math.inf if mean > 0 else 0.0)
    out = {
        **figures,
        "informativeness_gain": round(mean, 4),
        "se": round(se, 4),
        "z": round(z, 2) if math.isfinite(z) else z,
        "n": len(base),
    }
    b, c = figures["base"], figures["adapter"]
    if c["unsupported_word_rate"] > b["unsupported_word_rate"]:
        reason = f"more unsupported words ({c['unsupported_word_rate']} against {b['unsupported_word_rate']})"
    elif c["template_share"] > b["template_share"]:
        reason = f"more template texts ({c['template_share']} against {b['template_share']})"
    elif z < MIN_Z:
        reason = f"informativeness gain {mean:+.4f} (z {z:.2f}) is not significant (z >= {MIN_Z} needed)"
    else:
        why = f"informativeness {mean:+.4f} (z {z:.2f}), no more unsupported words or templates"
        return out | {"promoted": True, "reason": why}
    return out | {"promoted": False, "reason": reason}


def record(registry: Path, candidate: str, verdict: dict) -> None:
    """The verdict into the candidate's manifest (``held_out``) and, when promoted, the
    candidate into ``promoted_text.json`` (each file written whole, then renamed)."""
    from agent.evaluation.rerank_eval import write_json

    folder = Path(registry) / candidate
    write_json(folder / "manifest.json", read_manifest(folder) | {"held_out": verdict}, indent=2)
    if verdict["promoted"]:
        file = Path(registry) / TEXT_PROMOTED_FILE
        promoted = json.loads(file.read_text()) if file.exists() else {"history": []}
        promoted["history"].append({"adapter": candidate, "at": time.time(), "z": verdict["z"]})
        promoted["serving"] = candidate
        write_json(file, promoted, indent=2)

"""Issue 23 probe: do the films' facts say something about MDD's answers that retrieval order
misses? If a plain conditional-logit ranker over overlap features (shared director, cast,
writer, genres, tag words, era) cannot lift retrieval order, a 135M model reading the same facts
is unlikely to; if it can, that is the headroom a conversation-aware LLM reranker may take.

Every mapped MDD task-2 request goes through the chat's path as a new user (`chat_plan`, as
`muse eval --stage chat --mdd` does). Requests in the eval's seeded sample
(`chat_eval.mdd_sample`, 1000) are the test set; the others train the features' weights (and
are what `finetune/chat_rank_sft.py` trains on). Only requests whose answer is among the 20
candidates can move (the valid subset). Run from the repository root beside ../shared:
`python docs/chat_rerank_probe.py [WORKDIR]` (WORKDIR default .muse/eval, the fit shared with
`muse eval --stage chat`)."""

import json
import sys
import time
from pathlib import Path

import numpy as np

from agent.evaluation.chat_eval import chat_plan, mdd_sample, mdd_setup
from agent.evaluation.report import paired_gain
from agent.pipeline.ranker import CANDIDATES, standardize
from retrieval.metrics import ndcg_at

SHARED = Path("../shared/data")
FEATURES = ("retrieval", "director", "cast", "writer", "genres", "tags", "era")


def plan_all(workdir: Path) -> list[dict]:
    """Every mapped request planned once (cached in WORKDIR/chat-rerank-probe.jsonl)."""
    cache = workdir / "chat-rerank-probe.jsonl"
    if cache.exists():
        return [json.loads(line) for line in cache.read_text().splitlines()]
    setup = mdd_setup(SHARED / "ml-latest-small", SHARED / "mdd", workdir)
    test = {r.text for r in mdd_sample(setup.requests, 0, 1000)}
    rows, started = [], time.perf_counter()
    for n, r in enumerate(setup.requests):
        target = set(setup.titles.ids(r.targets))
        plan, state = chat_plan(setup.agent, r.text)
        ids = [it.id for it in plan.items]
        hit = next((p for p, i in enumerate(ids) if i in target), None)
        rows.append(
            {
                "test": r.text in test,
                "ids": ids,
                "scores": [float(s) for s in plan.scores],
                "target": hit,
                "liked": list(state.ids("liked", "mentioned")),
            }
        )
        if n % 1000 == 0:
            print(f"planned {n} of {len(setup.requests)} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    items = {i: setup.agent.store.get_items([i])[0] for r in rows for i in r["ids"] + r["liked"]}
    setup.close()
    facts = {
        i: {
            "categories": list(it.categories),
            "year": it.year,
            "tags": sorted(set(it.text.removeprefix("Tags:").rstrip(".").replace(",", " ").split())),
            **{k: list(v) for k, v in (it.metadata or {}).items() if isinstance(v, (list, tuple))},
        }
        for i, it in items.items()
    }
    cache.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (workdir / "chat-rerank-probe-facts.json").write_text(json.dumps(facts))
    return rows


def features(row: dict, facts: dict) -> np.ndarray:
    """(candidates, FEATURES): z(retrieval score) and each overlap with the liked films."""
    liked = [facts[i] for i in row["liked"] if i in facts]
    pooled = {
        k: set().union(*(f.get(k, []) for f in liked)) if liked else set() for k in ("director", "cast", "writer")
    }
    years = [f["year"] for f in liked if f.get("year")]
    mid = float(np.median(years)) if years else None
    tags = set().union(*(f["tags"] for f in liked)) if liked else set()
    out = []
    for i in row["ids"]:
        f = facts[i]
        genres = [
            len(set(f["categories"]) & set(g["categories"])) / max(1, len(set(f["categories"]) | set(g["categories"])))
            for g in liked
        ]
        out.append(
            [
                len(pooled["director"] & set(f.get("director", []))) > 0,
                len(pooled["cast"] & set(f.get("cast", []))),
                len(pooled["writer"] & set(f.get("writer", []))) > 0,
                float(np.mean(genres)) if genres else 0.0,
                len(tags & set(f["tags"])),
                -abs(f["year"] - mid) / 10 if f.get("year") and mid is not None else 0.0,
            ]
        )
    return np.column_stack([standardize(row["scores"]), np.array(out, dtype=float)])


def fit_logit(xs: list[np.ndarray], ys: list[int], l2: float = 1e-2, steps: int = 500) -> np.ndarray:
    """Conditional logit (softmax over each request's candidates), by gradient descent."""
    w = np.zeros(xs[0].shape[1])
    w[0] = 1.0  # start at retrieval order
    for _ in range(steps):
        grad = l2 * w
        for x, y in zip(xs, ys):
            p = np.exp(x @ w - np.max(x @ w))
            p /= p.sum()
            grad -= (x[y] - p @ x) / len(xs)
        w -= 0.5 * grad
    return w


def main() -> None:
    workdir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".muse/eval")
    rows = plan_all(workdir)
    facts = json.loads((workdir / "chat-rerank-probe-facts.json").read_text())
    full = [r for r in rows if r["target"] is not None and len(r["ids"]) == CANDIDATES]
    train = [r for r in full if not r["test"]]
    test = [r for r in full if r["test"]]
    n_test = sum(r["test"] for r in rows)
    print(f"requests {len(rows)}, valid (answer among the 20): train {len(train)}, test {len(test)} of {n_test}")
    xs = [features(r, facts) for r in train]
    w = fit_logit(xs, [r["target"] for r in train])
    print("weights:", dict(zip(FEATURES, np.round(w, 3))))
    for name, cols in (("retrieval order", None), ("features + retrieval", w)):
        ranks = []
        for r in test:
            x = features(r, facts)
            s = x[:, 0] if cols is None else x @ cols
            order = list(np.argsort(-s, kind="stable"))
            ranks.append(order.index(r["target"]) + 1)
        n10 = [ndcg_at(k, 10) for k in ranks]
        r10 = [float(k <= 10) for k in ranks]
        r1 = np.mean([k == 1 for k in ranks])
        print(f"{name}: valid-subset N@10 {np.mean(n10):.4f}, R@10 {np.mean(r10):.4f}, R@1 {r1:.4f}")
        if cols is None:
            base_n10, base_r10 = n10, r10
    mean, se = paired_gain(base_n10, n10)
    print(f"paired N@10 gain {mean:+.4f} (95% CI {mean - 1.96 * se:+.4f} .. {mean + 1.96 * se:+.4f}), n={len(test)}")
    mean, se = paired_gain(base_r10, r10)
    print(f"paired R@10 gain {mean:+.4f} (95% CI {mean - 1.96 * se:+.4f} .. {mean + 1.96 * se:+.4f})")


if __name__ == "__main__":
    main()

"""Self-contained HTML reports with plots: `muse eval --report DIR`, `muse finetune ab-report --report DIR`.

Each report is one ``index.html`` (plots as inline SVG drawn by matplotlib, no script, no
stylesheet or font fetched from anywhere, so it opens offline) beside ``result.json``, the same
object ``--json`` prints. Every number in the tables is that object's value rounded to four
decimals; the page embeds the object too (``<script type="application/json" id="result">``), so
a reader or a test can check one against the other.
"""

from __future__ import annotations

import html
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

DIGITS = 4
ACCURACY_KEYS = ("N@10", "R@10", "M@10", "N@20", "R@20")
AB_KEYS = ("impressions", "items_shown", "engagements", "engaged_impressions", "engagement_rate")
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 64rem; margin: 2rem auto; padding: 0 1rem; color: #1d1d1f; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; }
th, td { border: 1px solid #d9d9de; padding: .25rem .6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
caption { text-align: left; font-weight: 600; padding-bottom: .25rem; }
figure { margin: 1rem 0; } svg { max-width: 100%; height: auto; }
.meta { color: #5f6368; }
"""


def fmt(value: float | None) -> str:
    """A table cell: ints as they are, floats rounded to ``DIGITS`` decimals, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{DIGITS}f}"


def table(caption: str, columns: Sequence[str], rows: dict[str, dict], table_id: str, row_name: str = "model") -> str:
    """An HTML table: one row per name in ``rows`` (headed ``row_name``), one column per key in
    ``columns``."""
    head = "".join(f"<th scope='col'>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        f"<tr><th scope='row'>{html.escape(name)}</th>"
        + "".join(f"<td data-key='{html.escape(c)}'>{fmt(row.get(c))}</td>" for c in columns)
        + "</tr>"
        for name, row in rows.items()
    )
    return (
        f"<table id='{table_id}'><caption>{html.escape(caption)}</caption>"
        f"<thead><tr><th scope='col'>{html.escape(row_name)}</th>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def svg_bars(title: str, groups: Sequence[str], series: dict[str, Sequence[float]], ylabel: str) -> str:
    """Grouped bars as an inline SVG string: one group per label in ``groups``, one bar per
    series name, heights from ``series[name][group]``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    width = 0.8 / max(len(series), 1)
    for n, (name, values) in enumerate(series.items()):
        xs = [g + (n - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [0.0 if v is None or math.isnan(v) else v for v in values], width, label=name)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    out = io.StringIO()
    fig.savefig(out, format="svg")
    plt.close(fig)
    svg = out.getvalue()
    return svg[svg.index("<svg") :]  # drop the XML prolog and DOCTYPE: the SVG sits inside HTML


def figure(svg: str, caption: str) -> str:
    label = html.escape(caption)
    return f"<figure role='img' aria-label='{label}'>{svg}<figcaption>{label}</figcaption></figure>"


def page(title: str, meta: str, parts: Sequence[str], result: dict) -> str:
    # "</" cannot end the embedded JSON early: escape it as JSON allows.
    data = json.dumps(result, sort_keys=True).replace("</", "<\\/")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><p class='meta'>{html.escape(meta)}</p>"
        + "".join(parts)
        + f"<script type='application/json' id='result'>{data}</script></body></html>"
    )


def _buckets_figure(result: dict, key: str, title: str) -> list[str]:
    rows = result.get("buckets", {}).get(key)
    if not rows:
        return []
    labels = [r["bucket"] for r in rows]
    models = [m for m in rows[0] if m not in ("bucket", "users")]
    series = {m: [r[m] for r in rows] for m in models}
    per_bucket = {r["bucket"]: {"users": r["users"], **{m: r[m] for m in models}} for r in rows}
    return [
        figure(svg_bars(title, labels, series, "N@10"), f"{title} (N@10; users per bucket in the table)"),
        table(f"{title}: N@10", ["users", *models], per_bucket, f"buckets-{key}", row_name="bucket"),
    ]


def write_eval_report(result: dict, folder: Path) -> Path:
    """``folder/index.html`` and ``folder/result.json`` for one ``muse eval`` result; returns
    the HTML path. The folder is created; existing report files in it are replaced."""
    folder.mkdir(parents=True, exist_ok=True)
    if result["stage"] == "rerank":  # the ranker's orders beside retrieval order, all users
        split_rows = result["splits"][result["split"]]["rows"]
        rows = {name: row["all_users"] for name, row in split_rows.items()}
    else:
        rows = {"muse": result["metrics"], **result.get("baselines", {})}
    parts = [
        "<h2>Accuracy</h2>",
        figure(
            svg_bars(
                f"{result['stage']} stage, {result.get('split', 'test')} split",
                list(ACCURACY_KEYS),
                {name: [m.get(k) for k in ACCURACY_KEYS] for name, m in rows.items()},
                "score",
            ),
            "accuracy per model beside the baselines",
        ),
        table("Accuracy (leave-one-out, one held-out item per user)", list(ACCURACY_KEYS), rows, "accuracy"),
    ]
    beyond = result.get("beyond_accuracy")
    if beyond:
        keys = list(next(iter(beyond.values())))
        parts += [
            "<h2>Beyond accuracy (top 10)</h2>",
            figure(
                svg_bars(
                    "coverage and intra-list diversity",
                    ["coverage", "ild"],
                    {name: [m["coverage"], m["ild"]] for name, m in beyond.items()},
                    "share",
                ),
                "catalog coverage and intra-list diversity per model",
            ),
            table("coverage, ILD, novelty (bits), ARP, popularity lift", keys, beyond, "beyond"),
        ]
    parts += ["<h2>Where it works</h2>"]
    parts += _buckets_figure(result, "history_length", "N@10 by the user's history length")
    parts += _buckets_figure(result, "item_popularity", "N@10 by the held-out item's popularity")
    meta = (
        f"{result.get('users', '?')} users, {result.get('items', '?')} items, seed {result.get('seed', '?')}; "
        "produced by `muse eval --report DIR`; the numbers are those of result.json."
    )
    out = folder / "index.html"
    (folder / "result.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    out.write_text(page(f"Muse evaluation: {result['stage']}", meta, parts, result))
    return out


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95% for ``z`` 1.96): Wilson,
    "Probable inference, the law of succession, and statistical inference", JASA 1927."""
    if trials <= 0:
        return (0.0, 0.0)
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return (max(0.0, centre - half), min(1.0, centre + half))


def paired_gain(base: Sequence[float], other: Sequence[float]) -> tuple[float, float]:
    """The one paired comparison: the mean per-row gain of ``other`` over ``base`` (the same rows,
    users or requests, in the same order) and its standard error (the gains' sample standard
    deviation over sqrt(n); 0.0 for fewer than two rows; (0.0, 0.0) for none). Raises
    ``ValueError`` when the two lengths differ."""
    if len(base) != len(other):
        raise ValueError(f"paired rows differ in number: {len(base)} and {len(other)}")
    n = len(base)
    if n == 0:
        return 0.0, 0.0
    gains = [b - a for a, b in zip(base, other, strict=True)]
    mean = sum(gains) / n
    se = math.sqrt(sum((g - mean) ** 2 for g in gains) / (n - 1) / n) if n > 1 else 0.0
    return mean, se


def write_ab_report(arms: dict[str, dict], folder: Path) -> Path:
    """``folder/index.html`` and ``folder/result.json`` for ``muse finetune ab-report``: the
    engagement rate of each arm with its 95% Wilson interval."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name, arm in arms.items():
        low, high = wilson_interval(arm["engaged_impressions"], arm["impressions"])
        rows[name] = {**arm, "ci_low": round(low, DIGITS), "ci_high": round(high, DIGITS)}
    parts = [
        figure(
            svg_bars(
                "engagement rate per arm",
                list(rows),
                {"engagement rate": [r["engagement_rate"] for r in rows.values()]},
                "share of impressions",
            ),
            "share of impressions with at least one engagement, per ranker adapter",
        ),
        table(
            "A/B arms (95% Wilson interval of the engagement rate)",
            [
                "impressions",
                "items_shown",
                "engagements",
                "engaged_impressions",
                "engagement_rate",
                "ci_low",
                "ci_high",
            ],
            rows,
            "arms",
            row_name="arm",
        ),
    ]
    out = folder / "index.html"
    (folder / "result.json").write_text(json.dumps(rows, indent=2, sort_keys=True))
    out.write_text(page("Muse A/B report", "produced by `muse finetune ab-report --report DIR`", parts, rows))
    return out

"""The HTML reports: self-contained (opens offline) and holding exactly the run's numbers."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from agent.evaluation.report import DIGITS, paired_gain, wilson_interval, write_ab_report, write_eval_report

METRICS = {"N@10": 0.0941, "R@10": 0.1672, "M@10": 0.0719, "N@20": 0.1095, "R@20": 0.2295}


class Cells(HTMLParser):
    """Every table cell as (table id, row name, column key, text), and every URL attribute."""

    def __init__(self):
        super().__init__()
        self.cells, self.urls, self.tags = [], [], set()
        self._table = self._row = self._key = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href", "xlink:href") and v]
        if tag == "table":
            self._table = a.get("id")
        elif tag == "th" and a.get("scope") == "row":
            self._row, self._text = "", ""
        elif tag == "td":
            self._key, self._text = a.get("data-key"), ""

    def handle_data(self, data):
        self._text += data

    def handle_endtag(self, tag):
        if tag == "th" and self._row == "":
            self._row = self._text
        elif tag == "td":
            self.cells.append((self._table, self._row, self._key, self._text))


def check_self_contained_and_equal(html_file: Path, expected: dict) -> Cells:
    """The page fetches nothing (no script or stylesheet file, every URL a fragment) and every
    table cell equals ``expected[table][row][key]`` rounded as the report rounds."""
    page = html_file.read_text()
    cells = Cells()
    cells.feed(page)
    assert "link" not in cells.tags
    assert all(u.startswith("#") for u in cells.urls), [u for u in cells.urls if not u.startswith("#")][:3]
    assert not re.search(r"<script[^>]+src=", page)
    assert cells.cells, "no table"
    for table, row, key, text in cells.cells:
        want = expected[table][row][key]
        assert text == (str(want) if isinstance(want, int) else f"{want:.{DIGITS}f}"), (table, row, key)
    embedded = re.search(r"<script type='application/json' id='result'>(.*?)</script>", page, re.DOTALL)[1]
    assert json.loads(embedded) == json.loads((html_file.parent / "result.json").read_text())
    return cells


def eval_expectations(result: dict) -> dict:
    """What each table of an eval report must hold, taken from the result object itself."""
    out = {"accuracy": {"muse": result["metrics"], **result["baselines"]}}
    if "beyond_accuracy" in result:
        out["beyond"] = result["beyond_accuracy"]
    for key, rows in result.get("buckets", {}).items():
        out[f"buckets-{key}"] = {r["bucket"]: r for r in rows}
    return out


def test_eval_report_is_offline_and_equals_the_result(tmp_path):
    result = {
        "stage": "retrieval",
        "split": "test",
        "seed": 0,
        "users": 3,
        "items": 10,
        "metrics": METRICS,
        "baselines": {"popularity": {k: v / 4 for k, v in METRICS.items()}},
        "beyond_accuracy": {
            "muse": {"coverage": 0.5, "ild": 0.61, "novelty": 3.2, "arp": 0.1, "popularity_lift": 0.8},
            "popularity": {"coverage": 0.1, "ild": 0.4, "novelty": 1.1, "arp": 0.4, "popularity_lift": 2.5},
        },
        "buckets": {
            "history_length": [{"bucket": "0-19", "users": 2, "muse": 0.5, "popularity": 0.25}],
            "item_popularity": [{"bucket": "tail (last 50%)", "users": 1, "muse": 0.0, "popularity": 0.0}],
        },
    }
    html_file = write_eval_report(result, tmp_path / "report")
    assert json.loads((tmp_path / "report" / "result.json").read_text()) == result
    cells = check_self_contained_and_equal(html_file, eval_expectations(result))
    assert {t for t, *_ in cells.cells} == {"accuracy", "beyond", "buckets-history_length", "buckets-item_popularity"}
    assert html_file.read_text().count("<svg") == 4  # accuracy, beyond accuracy, two bucket plots


def test_ab_report_with_wilson_intervals(tmp_path):
    arms = {
        "rank-a": {"impressions": 100, "items_shown": 500, "engagements": 30, "engaged_impressions": 20,
                   "engagement_rate": 0.2},
        "rank-b": {"impressions": 50, "items_shown": 250, "engagements": 5, "engaged_impressions": 5,
                   "engagement_rate": 0.1},
    }  # fmt: skip
    html_file = write_ab_report(arms, tmp_path / "ab")
    rows = json.loads((tmp_path / "ab" / "result.json").read_text())
    check_self_contained_and_equal(html_file, {"arms": rows})
    assert rows["rank-a"]["ci_low"] < 0.2 < rows["rank-a"]["ci_high"]


def test_wilson_interval_by_hand():
    # 20 of 100, z 1.96: centre (0.2 + 0.019208) / 1.038416 = 0.211104, half 0.077649
    low, high = wilson_interval(20, 100)
    assert low == pytest.approx(0.1334, abs=1e-4) and high == pytest.approx(0.2888, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 0.0)
    assert wilson_interval(0, 10)[0] == 0.0


def test_rerank_report_puts_the_ranker_beside_retrieval_order(tmp_path):
    rows = {
        name: {"all_users": {k: v * f for k, v in METRICS.items()}} for name, f in (("retrieval", 1.0), ("fused", 1.1))
    }
    result = {"stage": "rerank", "split": "test", "seed": 0, "metrics": rows["fused"]["all_users"],
              "splits": {"test": {"rows": rows}}}  # fmt: skip
    html_file = write_eval_report(result, tmp_path / "rerank")
    check_self_contained_and_equal(html_file, {"accuracy": {n: r["all_users"] for n, r in rows.items()}})


def test_paired_gain_by_hand():
    # gains 1, 0, 2: mean 1, sample sd 1, se 1 / sqrt(3)
    mean, se = paired_gain([0.0, 1.0, 0.0], [1.0, 1.0, 2.0])
    assert mean == pytest.approx(1.0) and se == pytest.approx(1 / 3**0.5)
    assert paired_gain([0.5], [0.7]) == (pytest.approx(0.2), 0.0)  # one row: no spread to measure
    assert paired_gain([], []) == (0.0, 0.0)
    with pytest.raises(ValueError, match="differ in number: 2 and 1"):
        paired_gain([0.0, 1.0], [1.0])

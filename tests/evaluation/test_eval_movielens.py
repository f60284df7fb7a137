"""The acceptance run on the real dataset: the LlamaRec protocol through Chroma (about 6 min).

Skipped when ../shared/data/ml-latest-small is absent; CI has it.
"""

import json

import pytest

from agent.cli import main
from tests.evaluation.test_report import check_self_contained_and_equal, eval_expectations

pytestmark = [pytest.mark.slow, pytest.mark.movielens]


def test_protocol_counts_and_retrieval_beats_baselines(movielens, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MUSE_DATA_DIR", str(tmp_path))
    folder = tmp_path / "report"
    assert main(["eval", "--data", str(movielens), "--stage", "retrieval", "--json", "--report", str(folder)]) == 0
    report = json.loads(capsys.readouterr().out)
    # The 5-core filter of design.md, exactly.
    assert (report["users"], report["items"], report["interactions"]) == (610, 3650, 90274)
    knn, pop = report["baselines"]["item_knn"], report["baselines"]["popularity"]
    # item-kNN over the last 20 items, decayed 0.9: design.md measured N@10 0.0521.
    assert knn["N@10"] == pytest.approx(0.0521, abs=0.002)
    assert pop["N@10"] < knn["N@10"]
    muse = report["metrics"]
    # One standard error of N@10 on 610 users is about 0.007: demand several.
    assert muse["N@10"] > knn["N@10"] + 0.02
    assert muse["R@20"] > knn["R@20"] + 0.03

    # The HTML report of the same run: offline, and its numbers are the printed ones.
    assert json.loads((folder / "result.json").read_text()) == report
    check_self_contained_and_equal(folder / "index.html", eval_expectations(report))
    beyond = report["beyond_accuracy"]
    assert set(beyond) == {"muse", "popularity", "item_knn"}
    # Popularity recommends the same few items to everyone: Muse covers far more of the catalog.
    assert beyond["muse"]["coverage"] > 3 * beyond["popularity"]["coverage"]
    assert beyond["muse"]["novelty"] > beyond["popularity"]["novelty"]
    assert sum(r["users"] for r in report["buckets"]["history_length"]) == report["users"]

"""The `muse` command: ingest (all-or-nothing), eval's JSON contract for both stages."""

from __future__ import annotations

import json
import random

import pytest

from agent.cli import main
from agent.store import SQLiteStore
from retrieval.metrics import METRIC_KEYS


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSE_DATA_DIR", str(tmp_path / "muse"))
    return tmp_path / "muse"


def synthetic_dataset(folder, users=40, items=60, length=14, seed=0):
    """Users who walk a ring of items in order: a sequence any decent model can learn."""
    rnd = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    genres = ["Comedy", "Drama", "Horror", "Western"]
    with (folder / "items.jsonl").open("w") as f:
        for i in range(items):
            f.write(
                json.dumps(
                    {"id": f"i{i}", "title": f"Item number {i}", "year": 1950 + i, "categories": [genres[i % 4]]}
                )
                + "\n"
            )
    with (folder / "interactions.jsonl").open("w") as f:
        for u in range(users):
            start = rnd.randrange(items)
            for t in range(length):
                f.write(
                    json.dumps(
                        {
                            "user_id": f"u{u}",
                            "item_id": f"i{(start + t) % items}",
                            "timestamp": 1000 + t,
                            "kind": "rating",
                            "value": 4,
                        }
                    )
                    + "\n"
                )
    return folder


def test_ingest_is_idempotent(tmp_path, data_dir, capsys):
    folder = synthetic_dataset(tmp_path / "ds")
    assert main(["ingest", str(folder)]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["items"] == 60 and first["events"] == 40 * 14
    assert main(["ingest", str(folder)]) == 0
    assert json.loads(capsys.readouterr().out) == first


def test_bad_file_writes_nothing(tmp_path, data_dir, capsys):
    folder = synthetic_dataset(tmp_path / "ds")
    lines = (folder / "interactions.jsonl").read_text().splitlines()
    lines[100] = lines[100].replace('"timestamp": ', '"timestamp": "not-a-time", "x": ')
    (folder / "interactions.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["ingest", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "interactions.jsonl:101: unparsable timestamp 'not-a-time'" in err
    assert SQLiteStore(data_dir / "muse.db").counts() == {"items": 0, "users": 0, "events": 0, "impressions": 0}


def test_eval_json_contract(tmp_path, data_dir, capsys):
    folder = synthetic_dataset(tmp_path / "ds")
    assert main(["eval", "--data", str(folder), "--split", "validation", "--seed", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["users"], report["items"], report["interactions"]) == (40, 60, 560)
    assert report["split"] == "validation" and report["seed"] == 1
    assert set(METRIC_KEYS) <= set(report["metrics"])
    assert set(report["baselines"]) == {"popularity", "item_knn"}
    for metrics in [report["metrics"], *report["baselines"].values()]:
        assert all(0.0 <= metrics[k] <= 1.0 for k in METRIC_KEYS)
    # The ring is learnable: retrieval must beat popularity by a wide margin.
    assert report["metrics"]["R@10"] > report["baselines"]["popularity"]["R@10"] + 0.3


def test_rerank_eval_contract_and_never_worse_than_retrieval_on_validation(
    tmp_path, data_dir, monkeypatch, capsys, tiny_model, tiny_registry
):
    monkeypatch.setenv("MUSE_LLM_MODEL", str(tiny_model))
    monkeypatch.setenv("MUSE_ADAPTERS_DIR", str(tiny_registry))
    monkeypatch.setenv("MUSE_LLM_DTYPE", "float32")
    folder = synthetic_dataset(tmp_path / "ds")
    assert (
        main(
            [
                "eval",
                "--data",
                str(folder),
                "--stage",
                "rerank",
                "--split",
                "validation",
                "--engine",
                "transformers",
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["stage"] == "rerank" and report["adapter"] == "rank-test"
    assert set(METRIC_KEYS) <= set(report["metrics"])
    block = report["splits"]["validation"]
    assert set(block["rows"]) == {"retrieval", "zero_shot", "tuned", "fused"}
    rows = {name: r["valid_subset"] for name, r in block["rows"].items()}
    # The fusion weight is chosen on this split from a grid that includes 0 (retrieval order).
    assert rows["fused"]["N@10"] >= rows["retrieval"]["N@10"]
    # The random adapter changes the scores: its row is not the base model's row.
    assert block["rows"]["tuned"] != block["rows"]["zero_shot"]
    # Reordering the top 20 cannot change who has the item in the top 20.
    assert len({r["R@20"] for r in rows.values()}) == 1
    assert report["metrics"] == block["rows"]["fused"]["all_users"]


def test_unknown_rank_adapter_is_refused(tmp_path, data_dir, monkeypatch, capsys, tiny_registry):
    monkeypatch.setenv("MUSE_ADAPTERS_DIR", str(tiny_registry))
    monkeypatch.setenv("MUSE_RANK_ADAPTER", "../../etc")
    folder = synthetic_dataset(tmp_path / "ds")
    assert main(["eval", "--data", str(folder), "--stage", "rerank", "--engine", "transformers"]) == 2
    assert "unknown adapter '../../etc'" in capsys.readouterr().err


def test_ingest_joins_a_knowledge_base_of_credits(tmp_path, data_dir, capsys):
    """`muse ingest PATH --facts KB`: the credits of the films that match by title and year are
    stored as item metadata; a bad knowledge base writes nothing."""
    items = tmp_path / "items.jsonl"
    items.write_text(
        '{"id": "1", "title": "Toys", "year": 1992}\n{"id": "2", "title": "Unknown Film", "year": 2001}\n',
        encoding="utf-8",
    )
    kb = tmp_path / "movie_kb.txt"
    kb.write_text(
        "1 Toys directed_by Barry Levinson\n2 Toys starred_actors Robin Williams, Joan Cusack\n"
        "3 Toys release_year 1992\n",
        encoding="utf-8",
    )
    bad = tmp_path / "bad_kb.txt"
    bad.write_text("1 Toys directed_by Barry Levinson\nnot a fact\n", encoding="utf-8")
    assert main(["ingest", str(items), "--facts", str(bad)]) == 2
    assert "bad_kb.txt:2: expected '<n> <title> <relation> <value>'" in capsys.readouterr().err
    assert SQLiteStore(data_dir / "muse.db").counts()["items"] == 0
    assert main(["ingest", str(items), "--facts", str(kb)]) == 0
    assert "facts joined to 1 of 2 items (1 with a director, 1 with a cast)" in capsys.readouterr().err
    stored = {it.id: it.metadata for it in SQLiteStore(data_dir / "muse.db").items()}
    assert stored == {"1": {"director": ["Barry Levinson"], "cast": ["Robin Williams", "Joan Cusack"]}, "2": {}}


def test_demo_files_ingest_one_by_one(data_dir, capsys):
    from tests.conftest import DEMO

    assert main(["ingest", str(DEMO / "demo_items.jsonl")]) == 0
    assert main(["ingest", str(DEMO / "demo_interactions.jsonl")]) == 0
    counts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert counts["items"] == 200 and counts["events"] == 821 and counts["users"] == 40


def test_events_for_items_not_in_the_store_are_refused(tmp_path, data_dir, capsys):
    from tests.conftest import DEMO

    assert main(["ingest", str(DEMO / "demo_interactions.jsonl")]) == 2
    assert "unknown item" in capsys.readouterr().err


def test_demo_runs_end_to_end(data_dir, capsys):
    """What `make run` does today: ingest, index, recommend for two demo users."""
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()[:3].strip(". ").isdigit()]
    assert len(lines) == 10 and all("via hybrid" in line for line in lines)
    assert main(["recommend", "--user", "demo-user-01", "--k", "3", "--category", "Western", "--json"]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert len(reply["items"]) == 3 and all("Western" in i["categories"] for i in reply["items"])


def test_serve_refuses_unknown_adapters_before_any_work(data_dir, monkeypatch, capsys):
    monkeypatch.setenv("MUSE_AB_ADAPTERS", "rank-v2,rank-nope")
    assert main(["serve", "--demo"]) == 2
    assert "unknown adapter 'rank-nope'; allowed:" in capsys.readouterr().err
    assert not (data_dir / "muse.db").exists()  # nothing ingested or indexed

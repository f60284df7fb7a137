"""`muse loop simulate` end to end on the demo catalog with the tiny model: one feedback round
replays users through a real SQLite store, builds leak-guarded data, trains a child adapter,
loads it into the running engine and evaluates it with `muse eval`'s metric keys."""

from __future__ import annotations

import json
import shutil

import pytest

from finetune.loop import LoopConfig, engaged, positions
from tests.conftest import DEMO


def test_positions_stay_inside_the_unseen_tail_and_clicks_need_the_future():
    cfg = LoopConfig(data=DEMO, rounds=2, unseen=16)
    assert [positions(40, r, cfg) for r in (1, 2)] == [24, 32]
    assert positions(6, 1, cfg) == 3 and positions(4, 2, cfg) == 3  # at least 3 items of history
    assert engaged(["a", "b", "c"], ["c", "x", "a"]) == ["a", "c"]


@pytest.fixture(scope="module")
def demo_dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo-dataset")
    shutil.copy(DEMO / "demo_items.jsonl", folder / "items.jsonl")
    shutil.copy(DEMO / "demo_interactions.jsonl", folder / "interactions.jsonl")
    return folder


@pytest.mark.slow
def test_one_round_end_to_end(demo_dataset, tmp_path, tiny_model, tiny_registry, capsys):
    from agent.cli import main
    from agent.store import SQLiteStore
    from retrieval.metrics import METRIC_KEYS

    work = tmp_path / "loop"
    argv = [
        "loop",
        "simulate",
        "--data",
        str(demo_dataset),
        "--rounds",
        "1",
        "--json",
        "--work-dir",
        str(work),
        "--start",
        str(tiny_registry / "rank-test"),
        "--unseen",
        "6",
        "--max-steps",
        "2",
    ]
    env = {"MUSE_LLM_MODEL": str(tiny_model), "MUSE_LLM_DTYPE": "float32"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    r0, r1 = result["rounds"]
    assert (r0["round"], r0["adapter"], r1["round"], r1["adapter"]) == (0, "rank-test", 1, "loop-r1")
    for r in (r0, r1):
        for split in ("validation", "test"):
            assert list(r[split]["metrics"]) == list(METRIC_KEYS)  # the keys of `muse eval`
            assert r[split]["fusion_weight"] == r["validation"]["fusion_weight"]  # chosen on validation
    feedback = r1["feedback"]
    assert feedback["impressions"] > 0 and 0 < feedback["clicked"] < feedback["shown"]
    assert feedback["rows"]["sft_train.jsonl"] > 0

    store = SQLiteStore(work / "muse.db")
    impressions = store.impressions()
    assert len(impressions) == feedback["impressions"] and {i.model for i in impressions} == {"rank-test"}
    answers = [e for e in store.events() if e.impression_id]
    assert len(answers) == feedback["shown"]  # one click or skip per shown item
    # No click on a protocol validation/test item, and no training row answers with one.
    from agent.evaluation.retrieval_eval import prepare

    held_out = {(u, i) for u, seq in prepare(demo_dataset).loo.sequences.items() for i in seq[-2:]}
    assert not {(e.user_id, e.item_id) for e in answers if e.kind == "click"} & held_out
    manifest = json.loads((work / "adapters" / "loop-r1" / "manifest.json").read_text())
    assert manifest["parent"] == "rank-test" and manifest["method"] == "sft"

    # The round's adapter judged by `muse finetune promote --data` on the loop's cached candidates.
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {**env, "MUSE_ADAPTERS_DIR": str(work / "adapters"), "MUSE_DATA_DIR": str(tmp_path)}.items():
            mp.setenv(k, v)
        code = main(
            ["finetune", "promote", "--candidate", "loop-r1", "--data", str(demo_dataset), "--work-dir", str(work)]
        )
    verdict = json.loads(capsys.readouterr().out)
    judged = verdict["evaluations"]["protocol_validation"]
    assert verdict["current"] == "rank-test" and judged["users"] == len(held_out) // 2
    assert judged["current"]["N@10"] == round(r0["validation"]["metrics"]["N@10"], 4)  # same candidates, same scores
    assert code == (0 if verdict["promoted"] else 1) and set(judged["paired"]) == {"gain", "se", "z"}

    # A rerun resumes: nothing is replayed or trained again.
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        assert main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["rounds"] == result["rounds"] and len(SQLiteStore(work / "muse.db").impressions()) == len(impressions)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        assert main([*argv, "--shown", "5"]) == 2  # other settings in the same folder: refused
        assert main([*argv[:5], "2", *argv[6:]]) == 2  # more rounds would move the rounds' positions
    assert "holds a run with other settings" in capsys.readouterr().err


@pytest.mark.slow
def test_a_replay_cut_short_is_resumed_without_showing_twice(demo_dataset, tmp_path):
    from agent.pipeline.ranker import PromptConfig
    from finetune.loop import Loop

    loop = Loop(LoopConfig(data=demo_dataset, work_dir=tmp_path, rounds=2, unseen=6))
    model, store = loop.serving_retriever(), loop.store()
    first = loop.replay(store, 1, None, 0.0, None, model, PromptConfig())  # retrieval order: no engine needed
    again = loop.replay(store, 1, None, 0.0, None, model, PromptConfig())
    assert again == first and len(store.impressions()) == first["impressions"] > 0
    assert sum(1 for e in store.events() if e.impression_id) == first["shown"]


def test_the_cli_gives_each_round_the_trainers_options(monkeypatch, tmp_path):
    """`muse loop simulate` hands options it does not own to `FeedbackTrainConfig` (one
    declaration of the training knobs), with the loop's own defaults where they differ."""
    import finetune.loop
    from agent.cli import main

    seen = {}
    monkeypatch.setattr(finetune.loop, "simulate", lambda cfg: seen.setdefault("cfg", cfg) and {"rounds": []})
    monkeypatch.setenv("MUSE_DATA_DIR", str(tmp_path))
    argv = ["loop", "simulate", "--data", str(DEMO), "--start", "none", "--seed", "3"]
    assert main([*argv, "--json"]) == 0
    training = seen.pop("cfg").training
    assert (training.method, training.learning_rate, training.max_steps) == ("sft", 5e-4, -1)
    assert (
        main([*argv, "--json", "--method", "dpo", "--max-steps", "2", "--learning_rate", "1e-4", "--beta", "0.3"]) == 0
    )
    cfg = seen.pop("cfg")
    assert (cfg.training.method, cfg.training.max_steps, cfg.training.learning_rate, cfg.training.beta) == (
        "dpo",
        2,
        1e-4,
        0.3,
    )
    assert cfg.seed == 3 and cfg.start is None
    assert main([*argv, "--no-such-option", "1"]) == 2  # refused, not ignored

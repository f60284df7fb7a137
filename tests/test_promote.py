"""`muse finetune promote`: the decision on hand-worked numbers, and the command end to end on
the tiny model: a candidate no better than the serving adapter is refused with the numbers and
nothing changes; a better one is recorded as the serving adapter."""

from __future__ import annotations

import json
import shutil

import pytest

import finetune.feedback_data as fd
from finetune.promote import decide


def test_decide_needs_a_win_on_every_evaluation():
    better = {"current": {"N@10": 0.30}, "candidate": {"N@10": 0.32}}
    worse = {"current": {"N@10": 0.30}, "candidate": {"N@10": 0.29}}
    tie = {"current": {"N@10": 0.30}, "candidate": {"N@10": 0.30}}
    assert decide({"held_out_events": better})[0] is True
    ok, reason = decide({"held_out_events": better, "protocol_validation": worse})
    assert ok is False and "protocol_validation: candidate N@10 0.2900 vs current 0.3000" in reason
    assert decide({"held_out_events": tie})[0] is False  # not better is not promoted
    with pytest.raises(ValueError, match="nothing to judge on"):
        decide({})


@pytest.mark.slow
def test_refuses_a_candidate_that_is_not_better_then_promotes_a_better_one(logged, tmp_path, tiny_model,
                                                                           tiny_registry, capsys, monkeypatch):
    from agent.cli import main
    from agent.config import Settings
    from finetune.feedback_train import FeedbackTrainConfig, train

    registry = shutil.copytree(tiny_registry, tmp_path / "adapters")
    monkeypatch.setenv("MUSE_ADAPTERS_DIR", str(registry))
    monkeypatch.setenv("MUSE_LLM_MODEL", str(tiny_model))
    monkeypatch.setenv("MUSE_LLM_DTYPE", "float32")
    monkeypatch.setenv("MUSE_DATA_DIR", str(tmp_path / "data"))
    fd.build_data(logged, tmp_path / "feedback", fd.BuildConfig(cutoff=0.0), held_out=set())  # all held out
    assert (tmp_path / "feedback" / "sft_eval.jsonl").read_text().count("\n") == 2

    shutil.copytree(registry / "rank-test", registry / "rank-copy")  # the same weights: not better
    assert main(["finetune", "promote", "--candidate", "rank-copy", "--feedback", str(tmp_path / "feedback")]) == 1
    out = capsys.readouterr()
    result = json.loads(out.out)
    numbers = result["evaluations"]["held_out_events"]
    assert result["promoted"] is False and numbers["candidate"] == numbers["current"] and numbers["rows"] == 2
    assert "refused: not better; held_out_events: candidate N@10" in out.err
    assert not (registry / "promoted.json").exists() and Settings().ranker_adapter() == "rank-test"

    # A candidate fitted to those very rows (only to get one that is surely better) is promoted.
    fitted = tmp_path / "fit-on-eval"
    fitted.mkdir()
    shutil.copy(tmp_path / "feedback" / "sft_eval.jsonl", fitted / "sft_train.jsonl")
    train(FeedbackTrainConfig(method="sft", data=fitted, name="rank-fitted", registry=registry, parent="rank-test",
                              model_dir=tiny_model, max_steps=15, batch_size=2, learning_rate=5e-2, warmup_steps=0,
                              dtype="float32"), say=lambda _: None)
    assert main(["finetune", "promote", "--candidate", "rank-fitted", "--feedback", str(tmp_path / "feedback")]) == 0
    result = json.loads(capsys.readouterr().out)
    numbers = result["evaluations"]["held_out_events"]
    assert result["promoted"] is True and numbers["candidate"]["N@10"] > numbers["current"]["N@10"]
    log = json.loads((registry / "promoted.json").read_text())
    assert log["serving"] == "rank-fitted" and log["history"][0]["previous"] == "rank-test"
    assert Settings().ranker_adapter() == "rank-fitted"  # what a restarted service serves

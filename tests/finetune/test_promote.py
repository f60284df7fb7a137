"""`muse finetune promote`: the decision on hand-worked numbers, and the command end to end on
the tiny model: a candidate no better than the serving adapter is refused with the numbers and
nothing changes; a better one is recorded as the serving adapter."""

from __future__ import annotations

import json
import shutil

import pytest

import finetune.feedback_data as fd
from agent.llm.registry import ranker_adapter
from finetune.promote import decide, paired


def evaluation(current: float, candidate: float, gain: float, se: float) -> dict:
    return {
        "current": {"N@10": current},
        "candidate": {"N@10": candidate},
        "paired": {"gain": gain, "se": se, "z": round(gain / se, 2) if se else 0.0},
    }


def test_paired_gain_on_hand_worked_rows():
    assert paired([0.5, 0.5, 1.0], [1.0, 1.0, 1.0]) == {"gain": 0.3333, "se": 0.1667, "z": 2.0}
    assert paired([0.5, 0.5], [0.5, 0.5]) == {"gain": 0.0, "se": 0.0, "z": 0.0}
    assert paired([0.5, 0.5], [1.0, 1.0])["z"] == float("inf")  # the same gain on every row


def test_decide_needs_a_significant_win_on_every_evaluation():
    better = evaluation(0.30, 0.36, 0.06, 0.02)  # z 3
    noise = evaluation(0.0928, 0.0940, 0.0012, 0.0013)  # a higher N@10, inside the noise
    assert decide({"held_out_events": better})[0] is True
    ok, reason = decide({"held_out_events": better, "protocol_validation": noise})
    assert ok is False
    assert (
        "protocol_validation: candidate N@10 0.0940 vs current 0.0928 (gain +0.0012, se 0.0013, z 0.92 < 1.645)"
        in reason
    )
    assert decide({"held_out_events": evaluation(0.3, 0.3, 0.0, 0.0)})[0] is False  # a tie is not better
    with pytest.raises(ValueError, match="nothing to judge on"):
        decide({})


def more_clicks(store, n: int) -> None:
    """``n`` more impressions of user u1 (candidates rotated), each answered by a click."""
    from agent.catalog import Interaction

    for k in range(n):
        candidates = [f"c{(j + k) % 20}" for j in range(20)]
        imp = store.add_impression("u1", candidates[:5], [1.0] * 5, "rank-v2", candidates=candidates)
        store.add_events(
            [Interaction("u1", candidates[k % 5], store.impression(imp).created_at + 1, "click", impression_id=imp)]
        )


@pytest.mark.slow
def test_refuses_a_candidate_that_is_not_better_then_promotes_a_better_one(
    logged, tmp_path, tiny_model, tiny_registry, capsys, monkeypatch
):
    from agent.cli import main
    from agent.config import Settings
    from finetune.feedback_train import FeedbackJob, FeedbackTrainConfig, train

    registry = shutil.copytree(tiny_registry, tmp_path / "adapters")
    monkeypatch.setenv("MUSE_ADAPTERS_DIR", str(registry))
    monkeypatch.setenv("MUSE_LLM_MODEL", str(tiny_model))
    monkeypatch.setenv("MUSE_LLM_DTYPE", "float32")
    monkeypatch.setenv("MUSE_DATA_DIR", str(tmp_path / "data"))
    more_clicks(logged, 8)
    fd.build_data(logged, tmp_path / "feedback", fd.BuildConfig(cutoff=0.0), held_out=set())  # all held out
    assert (tmp_path / "feedback" / "sft_eval.jsonl").read_text().count("\n") == 10

    shutil.copytree(registry / "rank-test", registry / "rank-copy")  # the same weights: not better
    assert main(["finetune", "promote", "--candidate", "rank-copy", "--feedback", str(tmp_path / "feedback")]) == 1
    out = capsys.readouterr()
    result = json.loads(out.out)
    numbers = result["evaluations"]["held_out_events"]
    assert result["promoted"] is False and numbers["candidate"] == numbers["current"] and numbers["rows"] == 10
    assert "refused: not better; held_out_events: candidate N@10" in out.err
    assert not (registry / "promoted.json").exists() and ranker_adapter(Settings()) == "rank-test"

    # A candidate fitted to those very rows (only to get one that is surely better) is promoted.
    fitted = tmp_path / "fit-on-eval"
    fitted.mkdir()
    shutil.copy(tmp_path / "feedback" / "sft_eval.jsonl", fitted / "sft_train.jsonl")
    train(
        FeedbackJob(data=fitted, name="rank-fitted", registry=registry, parent="rank-test"),
        FeedbackTrainConfig(
            method="sft",
            model_dir=tiny_model,
            max_steps=15,
            batch_size=2,
            learning_rate=5e-2,
            warmup_steps=0,
            dtype="float32",
        ),
    )
    assert main(["finetune", "promote", "--candidate", "rank-fitted", "--feedback", str(tmp_path / "feedback")]) == 0
    result = json.loads(capsys.readouterr().out)
    numbers = result["evaluations"]["held_out_events"]
    assert result["promoted"] is True and numbers["candidate"]["N@10"] > numbers["current"]["N@10"]
    assert numbers["paired"]["z"] >= 1.645
    log = json.loads((registry / "promoted.json").read_text())
    assert log["serving"] == "rank-fitted" and log["history"][0]["previous"] == "rank-test"
    assert ranker_adapter(Settings()) == "rank-fitted"  # what a restarted service serves
    # The weight serving will use is recorded on this path too (--feedback alone), validated on
    # these rows. Here it is 0: the fitted adapter beats the current one, yet neither it nor its
    # fusion beats retrieval order on these clicks (every click is in the top five candidates).
    from agent.llm.registry import fusion_weight

    chosen = numbers["candidate"]
    manifest = json.loads((registry / "rank-fitted" / "manifest.json").read_text())
    assert manifest["fusion_weight"] == chosen["fusion_weight"] == result["fusion_weight"] == 0.0
    assert chosen["N@10"] <= numbers["retrieval"]["N@10"]
    assert manifest["fusion_weight_validation"]["users"] == 10
    assert manifest["fusion_weight_validation"]["retrieval_score"].startswith("minus the candidate's position")
    assert fusion_weight(Settings(), "rank-fitted") == chosen["fusion_weight"]

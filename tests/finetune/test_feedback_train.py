"""`muse finetune train`: each method trains the tiny model 2 steps from a registered parent
adapter; the new adapter's weights move away from the parent's, the base weights are untouched,
and the registry gains exactly one complete entry with its manifest."""

from __future__ import annotations

import json
import shutil

import pytest

import finetune.feedback_data as fd
from finetune.feedback_train import FeedbackJob, FeedbackTrainConfig, train


def adapter_tensors(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


@pytest.fixture
def registry(tmp_path, tiny_registry):
    folder = tmp_path / "adapters"
    shutil.copytree(tiny_registry, folder)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("method", ["sft", "dpo", "kto"])
def test_each_method_trains_a_child_of_the_parent(logged, tmp_path, tiny_model, registry, method):
    import torch
    from safetensors.torch import load_file

    report = fd.build_data(logged, tmp_path / "data", fd.BuildConfig(cutoff=float("inf")), held_out=set())
    base_before = load_file(str(tiny_model / "model.safetensors"))
    job = FeedbackJob(data=tmp_path / "data", name=f"rank-{method}-1", registry=registry, parent="rank-test")
    cfg = FeedbackTrainConfig(
        method=method, model_dir=tiny_model, max_steps=2, batch_size=2, learning_rate=1e-2, dtype="float32"
    )
    folder = train(job, cfg)

    assert sorted(p.name for p in registry.iterdir()) == sorted(["rank-test", f"rank-{method}-1"])
    parent, child = adapter_tensors(registry / "rank-test"), adapter_tensors(folder)
    assert parent.keys() == child.keys()  # the parent's LoRA layout, continued
    assert any(not torch.equal(parent[k], child[k]) for k in parent)
    assert all(torch.equal(v, base_before[k]) for k, v in load_file(str(tiny_model / "model.safetensors")).items())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["parent"] == "rank-test" and manifest["method"] == method
    assert manifest["data_hash"] == report["data_hash"] and manifest["config"]["history_items"] == 8


def test_bad_requests_fail_before_any_work(logged, tmp_path, registry):
    fd.build_data(logged, tmp_path / "data", fd.BuildConfig(cutoff=float("inf")), held_out=set())

    def job(**kw):
        return FeedbackJob(
            **{"data": tmp_path / "data", "name": "rank-new", "registry": registry, "parent": "rank-test", **kw}
        )

    dpo = FeedbackTrainConfig(method="dpo")
    with pytest.raises(ValueError, match="unknown method 'ppo'"):
        train(job(), FeedbackTrainConfig(method="ppo"))
    with pytest.raises(ValueError, match="already exists"):
        train(job(name="rank-test"), dpo)
    with pytest.raises(ValueError, match="parent adapter 'rank-missing' is not registered"):
        train(job(parent="rank-missing"), dpo)
    with pytest.raises(ValueError, match="has no dpo_train.jsonl"):
        train(job(data=tmp_path), dpo)
    assert job(parent="none").resolve("rank-test").parent is None
    assert job(parent="current").resolve("rank-test").parent == "rank-test"
    assert sorted(p.name for p in registry.iterdir()) == ["rank-test"]


def test_the_cli_passes_its_options_to_the_config(logged, tmp_path, registry, capsys, monkeypatch):
    from agent.cli import main

    fd.build_data(logged, tmp_path / "data", fd.BuildConfig(cutoff=float("inf")), held_out=set())
    monkeypatch.setenv("MUSE_ADAPTERS_DIR", str(registry))
    argv = ["finetune", "train", "--method", "dpo", "--data", str(tmp_path / "data"), "--name", "rank-test"]
    assert main(argv) == 2  # parsed into FeedbackTrainConfig (registry from the settings), then refused
    assert "adapter 'rank-test' already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:  # other commands still refuse unknown options
        main(["recommend", "--user", "u1", "--nonsense"])
    assert stopped.value.code == 2 and "unrecognized arguments: --nonsense" in capsys.readouterr().err

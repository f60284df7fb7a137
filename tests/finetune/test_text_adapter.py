"""The text adapter's loop (issue 24, item 3): sampled candidates -> the checked, most
informative one kept (``muse finetune text-data``) -> a LoRA adapter trained on them
(``muse finetune train --method text_sft``) -> judged on held-out picks (``promote-text``) ->
served by name (``MUSE_TEXT_ADAPTER`` / ``promoted_text.json``)."""

from __future__ import annotations

import json

import pytest

from agent.llm.engine import TextResult, fact_words
from finetune.promote_text import judge, record
from finetune.text_data import TextDataConfig, bootstrap, choose, held_out


class SamplingEngine:
    """Greedy writes the first two words of the first fact (passes, says little); a sample with
    an even seed invents words (refused); one with an odd seed copies a longer run of the facts
    (passes, says more)."""

    def __init__(self):
        self.adapters: dict = {}

    def complete(self, jobs, deadline, cancel=None):
        for n, job in enumerate(jobs):
            words = [w for w, _ in fact_words(job.spans or ("Nothing at all",))[0]]
            first = words[0][:1].lower() + words[0][1:]
            if job.temperature == 0:
                text = f" {first} {words[1]}."
            elif job.seed % 2 == 0:
                text = " about a zorblax of quimple vantroos."
            else:
                text = " " + " ".join([first, *words[1:6]]) + "."
            yield n, TextResult(text, True, 10, 5)


def test_the_most_informative_passing_candidate_is_kept():
    assert choose([("greedy", "", 0.2), ("a", "unsupported: moon", 0.9), ("b", "", 0.5)]) == ("b", "kept")
    assert choose([("greedy", "", 0.5), ("b", "", 0.5)]) == ("greedy", "greedy kept")  # a tie: the served way
    assert choose([("greedy", "cut_off", 0.0), ("a", "unsupported: moon", 0.9)]) == (None, "none passed")


def test_held_out_picks_are_a_stable_share():
    ids = [f"item-{n}" for n in range(2000)]
    share = sum(held_out(i, 0.2) for i in ids) / len(ids)
    assert 0.17 < share < 0.23
    assert [held_out(i, 0.2) for i in ids] == [held_out(i, 0.2) for i in ids]


def test_text_sft_rows_train_the_continuation_only(tiny_model):
    from transformers import AutoTokenizer

    from agent.llm.engine import TextJob
    from agent.llm.transformers_engine import continuation_ids
    from finetune.feedback_train import text_sft_rows

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    prompt = [{"role": "system", "content": "Write."}, {"role": "user", "content": "Pitch Heat."}]
    [row] = text_sft_rows(
        [{"prompt": prompt, "prefix": '"Heat" is a crime film', "completion": " where a cop."}], tokenizer
    )
    head = continuation_ids(tokenizer, TextJob(prompt, '"Heat" is a crime film'))
    assert row["input_ids"][: len(head)] == head  # exactly what the engines send
    tail = row["input_ids"][len(head) :]
    assert tokenizer.decode(tail[:-1]) == " where a cop." and tail[-1] == tokenizer.eos_token_id
    assert row["completion_mask"] == [0] * len(head) + [1] * len(tail)


@pytest.mark.slow
def test_the_loop_bootstraps_data_and_trains_a_text_adapter(demo_data, tmp_path, tiny_model):
    """Text data from the demo store's planned answers, then 2 training steps of a fresh LoRA on
    the tiny model: the adapter's weights move, the base model's do not."""
    import torch
    from safetensors.torch import load_file

    from agent.config import Settings
    from agent.indexing import load_retriever
    from agent.pipeline.recommender import MuseAgent
    from agent.store import SQLiteStore
    from finetune.feedback_train import FeedbackJob, FeedbackTrainConfig, train

    settings = Settings(data_dir=demo_data)
    agent = MuseAgent(settings, SQLiteStore(demo_data / "muse.db"), load_retriever(settings), SamplingEngine())
    report = bootstrap(agent, agent.gate.engine, TextDataConfig(tmp_path / "data", answers=3, k=3, samples=2))
    counts = report["counts"]
    assert counts["refused: unsupported"] > 0 and counts["kept"] > 0  # the inventions were refused
    rows = [json.loads(line) for line in (tmp_path / "data" / "text_sft_train.jsonl").read_text().splitlines()]
    evals = [json.loads(line) for line in (tmp_path / "data" / "text_sft_eval.jsonl").read_text().splitlines()]
    assert rows and not any("zorblax" in r["completion"] for r in rows)  # only checked texts are kept
    assert counts["kept"] + counts["greedy kept"] == len(rows) + len(evals)
    assert not {r["item_id"] for r in rows} & {r["item_id"] for r in evals}  # a held-out pick is never trained on
    assert all(not held_out(r["item_id"], 0.2) for r in rows)

    registry = tmp_path / "adapters"
    registry.mkdir()
    base_before = load_file(str(tiny_model / "model.safetensors"))
    job = FeedbackJob(data=tmp_path / "data", name="text-sft-1", registry=registry, parent=None)
    cfg = FeedbackTrainConfig(
        method="text_sft", model_dir=tiny_model, max_steps=2, batch_size=2, learning_rate=1e-2, dtype="float32"
    )
    folder = train(job, cfg)
    tensors = load_file(str(folder / "adapter_model.safetensors"))
    lora_b = [v for k, v in tensors.items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # peft starts B at zero: training moved it
    assert all(torch.equal(v, base_before[k]) for k, v in load_file(str(tiny_model / "model.safetensors")).items())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "text" and manifest["method"] == "text_sft" and manifest["rows"] == len(rows)


def _report(base: list[float], cand: list[float], shown=(10, 10), unsupported=(0.0, 0.0)) -> dict:
    ways = {}
    for way, s, u, vals in (
        ("facts' phrases", shown[0], unsupported[0], base),
        ("adapter", shown[1], unsupported[1], cand),
    ):
        ways[way] = {
            "texts": 10,
            "shown": s,
            "unsupported_word_rate": u,
            "informativeness": sum(vals) / len(vals),
            "engine_s": 1.0,
            "refused": {},
        }
    return {"ways": ways, "informativeness": {"facts' phrases": base, "adapter": cand}}


def test_promotion_needs_a_significant_gain_and_no_more_templates_or_unsupported_words(tmp_path):
    base = [0.3, 0.4, 0.35, 0.3, 0.45, 0.4, 0.3, 0.35, 0.4, 0.3]
    better = [b + 0.1 + 0.01 * (n % 3) for n, b in enumerate(base)]
    verdict = judge(_report(base, better))
    assert verdict["promoted"] and verdict["n"] == 10 and verdict["informativeness_gain"] > 0.1
    assert not judge(_report(base, better, shown=(10, 9)))["promoted"]  # one more template text
    assert not judge(_report(base, better, unsupported=(0.0, 0.01)))["promoted"]
    noisy = [b + (0.05 if n % 2 else -0.04) for n, b in enumerate(base)]
    assert "not significant" in judge(_report(base, noisy))["reason"]

    registry = tmp_path / "adapters"
    (registry / "text-1").mkdir(parents=True)
    (registry / "text-1" / "manifest.json").write_text('{"kind": "text"}')
    record(registry, "text-1", verdict)
    assert json.loads((registry / "promoted_text.json").read_text())["serving"] == "text-1"
    assert json.loads((registry / "text-1" / "manifest.json").read_text())["held_out"]["promoted"]


def test_the_text_adapter_is_the_named_or_promoted_one(tmp_path):
    from agent.config import Settings
    from agent.llm import registry
    from agent.llm.engine import UnknownAdapterError

    folder = tmp_path / "adapters"
    for name in ("rank-1", "text-1", "text-2"):
        (folder / name).mkdir(parents=True)
        (folder / name / "adapter_config.json").write_text("{}")
    settings = Settings(data_dir=tmp_path, adapters_dir=folder, text_adapter=None)  # not the suite's "none"
    assert registry.text_adapter(settings) is None  # never by name alone: only once promoted or named
    (folder / "promoted_text.json").write_text('{"serving": "text-1", "history": []}')
    assert registry.text_adapter(settings) == "text-1"
    assert registry.ranker_adapter(settings) == "rank-1"  # the ranker's choice is apart
    assert registry.text_adapter(settings.model_copy(update={"text_adapter": "text-2"})) == "text-2"
    assert registry.text_adapter(settings.model_copy(update={"text_adapter": "none"})) is None
    with pytest.raises(UnknownAdapterError):
        registry.text_adapter(settings.model_copy(update={"text_adapter": "text-9"}))
    with pytest.raises(ValueError, match="MUSE_RANK_ENGINE=lora"):
        registry.text_adapter(settings.model_copy(update={"rank_engine": "lora"}))


@pytest.mark.slow
def test_the_shipped_text_adapter_is_promoted_and_served_merged(tmp_path):
    """`make run` serves adapters/text-sft-1 (promoted_text.json) folded into the checkpoint the
    LLM engine loads; the merged weights differ from the base model's only where LoRA sits."""
    from safetensors.torch import load_file

    from agent.config import ADAPTERS_DIR, Settings
    from agent.llm import registry
    from agent.llm.model_files import model_path

    settings = Settings(data_dir=tmp_path, adapters_dir=ADAPTERS_DIR, text_adapter=None)
    assert registry.text_adapter(settings) == "text-sft-1"
    assert json.loads((ADAPTERS_DIR / "text-sft-1" / "manifest.json").read_text())["held_out"]["promoted"]
    merged = registry.text_checkpoint(settings)
    assert merged != model_path(settings) and (merged / "config.json").exists()
    base = load_file(str(model_path(settings) / "model.safetensors"))
    mine = load_file(str(next(merged.glob("*.safetensors"))))
    changed = {k for k in base if k in mine and not (base[k] == mine[k]).all()}
    assert changed and all("proj" in k for k in changed)  # the LoRA targets, nothing else

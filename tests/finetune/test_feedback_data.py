"""Feedback -> SFT/DPO/KTO rows: counts on a hand-made log, time split, de-duplication, the
leakage guard, and TRL's DPO and KTO trainers training on the exported files unchanged."""

from __future__ import annotations

import json

import pytest

import finetune.feedback_data as fd
from agent.catalog import Interaction
from tests.conftest import FEEDBACK_ITEMS as ITEMS


def test_rows_per_kind(logged, tmp_path):
    report = fd.build_data(logged, tmp_path, fd.BuildConfig(cutoff=float("inf")), held_out=set())
    assert report["files"] == {
        "sft_train.jsonl": 2,
        "sft_eval.jsonl": 0,
        "dpo_train.jsonl": 4,
        "dpo_eval.jsonl": 0,
        "kto_train.jsonl": 2,
        "kto_eval.jsonl": 0,
        "text_dpo_train.jsonl": 0,
        "text_dpo_eval.jsonl": 0,
        "text_kto_train.jsonl": 0,
        "text_kto_eval.jsonl": 0,
        "text_sft_train.jsonl": 0,
        "text_sft_eval.jsonl": 0,
    }
    assert report["skipped"] == {"too_little_history": 1}
    dpo = [json.loads(line) for line in (tmp_path / "dpo_train.jsonl").read_text().splitlines()]
    # c1 is label B, c4 is E; c2 (skipped) is C, c3 (disliked) is D
    assert sorted((r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in dpo) == [
        ("B", "C"),
        ("B", "D"),
        ("E", "C"),
        ("E", "D"),
    ]
    assert "Film number 22 (2012)" in dpo[0]["prompt"][-1]["content"]  # history as of the impression
    kto = [json.loads(line) for line in (tmp_path / "kto_train.jsonl").read_text().splitlines()]
    assert sorted((r["completion"][0]["content"], r["label"]) for r in kto) == [("D", False), ("E", True)]


def test_time_split_dedupe_and_leak_guard(logged):
    items = {it.id: it for it in ITEMS}
    impressions, events = logged.impressions(), logged.events()
    rows, _ = fd.build_rows(impressions, events, items, set(), cutoff=0.0, config=fd.BuildConfig())
    assert rows and {r.split for r in rows} == {"eval"}  # everything is after the cutoff

    twice, skipped = fd.build_rows(impressions * 2, events, items, set(), float("inf"), fd.BuildConfig())
    once, _ = fd.build_rows(impressions, events, items, set(), float("inf"), fd.BuildConfig())
    assert len(twice) == len(once) == 8 and skipped["duplicate"] == 8

    held = {("u1", "c4")}  # c4 is an evaluation item: nothing in training may answer with it
    guarded, skipped = fd.build_rows(impressions, events, items, held, float("inf"), fd.BuildConfig())
    assert all(r.item_id != "c4" for r in guarded) and skipped["held_out_item"] == 4  # 1 SFT, 2 DPO, 1 KTO
    fd.check_no_leak(guarded, held, float("inf"))
    with pytest.raises(fd.LeakError, match="evaluation item 'c4'"):
        fd.check_no_leak([fd.Row("sft", "train", "u1", "c4", 1.0)], held, float("inf"))
    with pytest.raises(fd.LeakError, match="after the cutoff"):
        fd.check_no_leak([fd.Row("sft", "train", "u1", "c1", 5.0)], set(), 5.0)


def test_an_impression_answered_after_the_cutoff_evaluates(logged):
    """u1's impression and its answers one second later: the cutoff on either side of each."""
    items = {it.id: it for it in ITEMS}
    impressions, events = logged.impressions(), logged.events()
    shown = next(imp for imp in impressions if imp.user_id == "u1").created_at

    def splits(cutoff: float) -> set[str]:
        rows, _ = fd.build_rows(impressions, events, items, set(), cutoff, fd.BuildConfig())
        return {r.split for r in rows}

    assert splits(shown + 2) == {"train"}  # shown and answered before the cutoff
    assert splits(shown + 0.5) == {"eval"}  # shown before, answered after: evaluates
    assert splits(shown - 1) == {"eval"}  # shown after


def test_a_dpo_pair_whose_rejected_item_is_held_out_is_not_trained(logged):
    items = {it.id: it for it in ITEMS}
    held = {("u1", "c3")}  # c3, disliked, is the rejected side of two pairs (B>D, E>D) and a KTO row
    rows, skipped = fd.build_rows(logged.impressions(), logged.events(), items, held, float("inf"), fd.BuildConfig())
    dpo = [r for r in rows if r.kind == "dpo"]
    assert len(dpo) == 2 and {r.data["rejected"][0]["content"] for r in dpo} == {"C"}
    assert skipped["held_out_item"] == 3 and all(r.item_id != "c3" for r in rows)
    fd.check_no_leak(rows, held, float("inf"))
    with pytest.raises(fd.LeakError, match="rejects evaluation item 'c3'"):
        fd.check_no_leak([fd.Row("dpo", "train", "u1", "c1", 1.0, rejected_id="c3")], held, float("inf"))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dpo", "kto"])
def test_trl_trains_on_the_exported_files(logged, tmp_path, tiny_model, method):
    """The files load with datasets and train with TRL's own trainers, unchanged: LoRA weights
    move, base weights do not."""
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    fd.build_data(logged, tmp_path / "data", fd.BuildConfig(cutoff=float("inf")), held_out=set())
    data = load_dataset("json", data_files=str(tmp_path / "data" / f"{method}_train.jsonl"), split="train")
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    common = {
        "output_dir": str(tmp_path / "out"),
        "max_steps": 2,
        "per_device_train_batch_size": 2,
        "learning_rate": 1e-2,
        "report_to": [],
        "save_strategy": "no",
        "use_cpu": True,
        "logging_steps": 1,
    }
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        trainer_cls, args = DPOTrainer, DPOConfig(**common)
    else:
        from trl import KTOConfig, KTOTrainer

        trainer_cls, args = KTOTrainer, KTOConfig(**common)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = trainer_cls(model=model, args=args, train_dataset=data, processing_class=tokenizer, peft_config=lora)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    lora_moved = [n for n in before if "lora_B" in n and not torch.equal(before[n], after[n])]
    base_moved = [n for n in before if "lora_" not in n and not torch.equal(before[n], after[n])]
    assert lora_moved and not base_moved


def test_thumbs_on_texts_become_kto_rows_and_pairs(store, tmp_path):
    """Thumbs on an explanation or a draft train on the prompt that asked for the text; two
    texts rated for the same prompt make a DPO pair. They never count as liking the item."""
    from agent.store import UnknownImpressionError
    from agent.store.history import user_sequences

    store.upsert_items(ITEMS)
    store.add_events([Interaction("u1", f"c{n}", 1000.0 + n, "like") for n in (20, 21, 22)])
    prompt = [{"role": "system", "content": "You write."}, {"role": "user", "content": "Pitch Film number 1."}]

    def shown(text):
        return {
            "c1": {
                "draft": {"prompt": prompt, "prefix": "Watch", "text": text, "source": "llm"},
                "explanation": {"prompt": prompt[:1], "text": "Because.", "source": "llm"},
            }
        }

    first = store.add_impression("u1", ["c1"], [1.0], "rank-v2", candidates=["c1", "c2"], texts=shown("Watch it."))
    second = store.add_impression("u1", ["c1"], [1.0], "rank-v2", candidates=["c1", "c2"], texts=shown("Meh."))
    t = store.impression(second).created_at + 1
    store.add_events(
        [
            Interaction("u1", "c1", t, "draft_like", impression_id=first),
            Interaction("u1", "c1", t, "draft_dislike", impression_id=second),
            Interaction("u1", "c1", t, "explanation_like", impression_id=second),
        ]
    )
    with pytest.raises(ValueError, match="needs the impression_id"):
        store.add_events([Interaction("u1", "c1", t, "draft_like")])
    with pytest.raises(UnknownImpressionError, match="did not show"):
        store.add_events([Interaction("u1", "c2", t, "draft_like", impression_id=first)])
    assert "c1" not in user_sequences(store.events())["u1"]  # a liked pitch is not a liked film

    report = fd.build_data(store, tmp_path, fd.BuildConfig(cutoff=float("inf")), held_out=set())
    assert report["files"]["text_kto_train.jsonl"] == 3 and report["files"]["text_dpo_train.jsonl"] == 1
    kto = [json.loads(line) for line in (tmp_path / "text_kto_train.jsonl").read_text().splitlines()]
    assert sorted((r["completion"][0]["content"], r["label"]) for r in kto) == [
        ("Because.", True),
        ("Meh.", False),
        ("Watch it.", True),
    ]
    (pair,) = [json.loads(line) for line in (tmp_path / "text_dpo_train.jsonl").read_text().splitlines()]
    assert pair["prompt"] == prompt and pair["chosen"][0]["content"] == "Watch it."
    assert pair["rejected"][0]["content"] == "Meh."
    (liked,) = [json.loads(line) for line in (tmp_path / "text_sft_train.jsonl").read_text().splitlines()]
    assert (liked["prefix"], liked["completion"]) == ("Watch", " it.")  # the liked draft's continuation
    guarded = fd.build_data(store, tmp_path / "guarded", fd.BuildConfig(cutoff=float("inf")), held_out={("u1", "c1")})
    assert guarded["files"]["text_kto_train.jsonl"] == guarded["files"]["text_sft_train.jsonl"] == 0
    assert guarded["skipped"]["held_out_item"] == 4  # three thumbs, one liked text

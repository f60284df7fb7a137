"""Ranker tuning: examples mirror inference, and two training steps move only the adapter."""

from __future__ import annotations

import numpy as np
import pytest

from agent.catalog import Item
from agent.pipeline.ranker import LABELS, PromptConfig
from finetune.rank_data import build_examples
from retrieval.hybrid import HybridConfig, HybridModel


@pytest.fixture
def ring_model(rng):
    ids = [f"i{n}" for n in range(30)]
    seqs = {f"u{u}": [f"i{(s + t) % 30}" for t in range(12)] for u, s in enumerate(rng.integers(0, 30, 40))}
    content = rng.normal(size=(30, 8)).astype(np.float32)
    model = HybridModel(ids, HybridConfig(sasrec=False, ease_lambda=1.0, ease_rank=30)).fit(
        list(seqs.values()), content
    )
    model.weights = {"sasrec": 0.0, "ease": 1.0, "content": 0.0}
    return model, seqs


def test_examples_use_the_retrievers_candidates_and_never_leak(ring_model):
    model, seqs = ring_model
    examples = build_examples(model, seqs, positions_per_user=4, k=20)
    assert examples
    for e in examples:
        seq = seqs[e.user]
        p = len(e.history)
        assert e.history == seq[:p] and e.candidates[e.target] == seq[p]
        assert len(e.candidates) == min(20, 30 - len(set(e.history)))
        assert not set(e.candidates) & set(e.history)
        assert e.scores == sorted(e.scores, reverse=True)  # retrieval order
        assert p >= len(seq) - 4


def test_two_steps_change_the_adapter_and_not_the_base(tiny_model, tmp_path, rng):
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig

    from agent.llm.engine import single_token_ids
    from finetune.rank_data import RankExample
    from finetune.rank_sft import label_trainer_class, tokenize

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    label_ids = single_token_ids(tokenizer, LABELS)
    items = {f"i{n}": Item(f"i{n}", f"Movie {n}", year=1990 + n) for n in range(40)}
    examples = [
        RankExample("u", [f"i{n}" for n in range(5)], [f"i{n}" for n in range(5, 25)], [0.0] * 20, int(t))
        for t in rng.integers(0, 20, 8)
    ]
    dataset = Dataset.from_list([tokenize(e, items, tokenizer, PromptConfig(), label_ids) for e in examples])
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    base_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    lora = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj", "down_proj"],
        layers_to_transform=[1],
        task_type="CAUSAL_LM",
    )
    args = SFTConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        max_steps=2,
        learning_rate=1e-2,
        report_to="none",
        max_length=None,
        save_strategy="no",
        logging_steps=1,
        bf16=False,
        gradient_checkpointing=False,
    )
    trainer = label_trainer_class()(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora,
        label_ids=label_ids,
    )
    lora_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    assert lora_before and any(not torch.equal(after[n], p) for n, p in lora_before.items() if "lora_B" in n)
    base_after = {
        n.replace("base_model.model.", "").replace(".base_layer", ""): p for n, p in after.items() if "lora_" not in n
    }
    assert base_after.keys() == base_before.keys()
    assert all(torch.equal(base_after[n], p) for n, p in base_before.items())
    # LoRA sits on the chosen layer only.
    assert all(".layers.1." in n for n in lora_before)


def test_prior_scale_is_the_maximum_likelihood_one():
    from finetune.rank_data import RankExample
    from finetune.rank_sft import fit_prior_scale, retrieval_prior

    # Two candidates: z = (1, -1). With the first one right 3 times in 4, the likelihood is highest
    # where softmax(s, -s) gives it 0.75: tanh(s) = 0.5, s = atanh(0.5) = 0.549.
    examples = [RankExample("u", ["h"], ["a", "b"], [2.0, 1.0], t) for t in (0, 0, 0, 1)]
    assert fit_prior_scale(examples) == 0.55
    # Retrieval order never right at the top: no trust in it at all.
    assert fit_prior_scale([RankExample("u", ["h"], ["a", "b"], [2.0, 1.0], 1)]) == 0.0
    assert retrieval_prior([2.0, 1.0], 0.5, 4) == [0.5, -0.5, -1e4, -1e4]  # missing candidates ruled out


def test_residual_training_adds_the_prior_to_the_label_logits(tiny_model, tmp_path, rng):
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig

    from agent.llm.engine import single_token_ids
    from finetune.rank_data import RankExample
    from finetune.rank_sft import label_trainer_class, tokenize

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    label_ids = single_token_ids(tokenizer, LABELS)
    items = {f"i{n}": Item(f"i{n}", f"Movie {n}", year=1990 + n) for n in range(40)}
    scores = [float(20 - n) for n in range(20)]
    examples = [
        RankExample("u", [f"i{n}" for n in range(5)], [f"i{n}" for n in range(5, 25)], scores, 0) for _ in range(4)
    ]
    args = SFTConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        max_steps=1,
        learning_rate=1e-2,
        report_to="none",
        max_length=None,
        save_strategy="no",
        bf16=False,
        gradient_checkpointing=False,
    )
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], layers_to_transform=[1], task_type="CAUSAL_LM")

    def first_batch_loss(scale):
        dataset = Dataset.from_list(
            [tokenize(e, items, tokenizer, PromptConfig(), label_ids, scale) for e in examples]
        )
        trainer = label_trainer_class()(
            model=AutoModelForCausalLM.from_pretrained(tiny_model),
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=lora,
            label_ids=label_ids,
        )
        batch = next(iter(trainer.get_train_dataloader()))
        assert ("prior" in batch) == (scale is not None) and batch["input_ids"].shape[0] == 4
        with torch.no_grad():
            loss = trainer.compute_loss(trainer.model, batch).item()
        trainer.train()  # the prior column goes through TRL's data path
        return loss

    plain, trusted = first_batch_loss(None), first_batch_loss(100.0)
    # A strong prior on the right answer (the first candidate) leaves almost nothing to learn.
    assert trusted < 0.01 < plain


def test_held_out_metrics_report_each_model_alone_and_fused(tiny_model, tiny_registry, rng):
    from finetune.rank_data import RankExample
    from finetune.rank_sft import held_out_metrics
    from retrieval.metrics import ndcg_at

    items = {f"i{n}": Item(f"i{n}", f"Movie {n}", year=1990 + n) for n in range(40)}
    examples = [
        RankExample(
            "u",
            [f"i{n}" for n in range(5)],
            [f"i{n}" for n in range(5, 25)],
            [float(20 - n) for n in range(20)],
            int(t),
        )
        for t in rng.integers(0, 20, 6)
    ]
    report = held_out_metrics(tiny_model, {"tuned": tiny_registry / "rank-test"}, examples, items, PromptConfig())
    assert report["positions"] == 6
    # Retrieval order: the answer sits at its own position.
    expected = np.mean([ndcg_at(e.target + 1, 10) for e in examples])
    assert report["retrieval"]["N@10"] == round(float(expected), 4)
    for model in ("zero_shot", "tuned"):
        fused = report[f"{model}_fused"]
        assert 0.0 <= fused["weight"] <= 1.0
        # Weight 0 (retrieval order) is on the grid, so the chosen fusion never does worse than it.
        assert fused["N@10"] >= report["retrieval"]["N@10"]

"""Ranker tuning: examples mirror inference, and two training steps move only the adapter."""

from __future__ import annotations

import numpy as np
import pytest

from agent.catalog import Item
from agent.ranker import LABELS, PromptConfig
from finetune.rank_data import build_examples
from retrieval.behavior import BehaviorConfig, HybridModel


@pytest.fixture
def ring_model(rng):
    ids = [f"i{n}" for n in range(30)]
    seqs = {f"u{u}": [f"i{(s + t) % 30}" for t in range(12)] for u, s in enumerate(rng.integers(0, 30, 40))}
    content = rng.normal(size=(30, 8)).astype(np.float32)
    model = HybridModel(ids, BehaviorConfig(sasrec=False, ease_lambda=1.0, ease_rank=30)).fit(
        list(seqs.values()), content)
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
    examples = [RankExample("u", [f"i{n}" for n in range(5)], [f"i{n}" for n in range(5, 25)], [0.0] * 20,
                            int(t)) for t in rng.integers(0, 20, 8)]
    dataset = Dataset.from_list([tokenize(e, items, tokenizer, PromptConfig(), label_ids) for e in examples])
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    base_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                      layers_to_transform=[1], task_type="CAUSAL_LM")
    args = SFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=2, learning_rate=1e-2,
                     report_to="none", max_length=None, save_strategy="no", logging_steps=1, bf16=False,
                     gradient_checkpointing=False)
    trainer = label_trainer_class()(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                    peft_config=lora, label_ids=label_ids)
    lora_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    assert lora_before and any(not torch.equal(after[n], p) for n, p in lora_before.items() if "lora_B" in n)
    base_after = {n.replace("base_model.model.", "").replace(".base_layer", ""): p
                  for n, p in after.items() if "lora_" not in n}
    assert base_after.keys() == base_before.keys()
    assert all(torch.equal(base_after[n], p) for n, p in base_before.items())
    # LoRA sits on the chosen layer only.
    assert all(".layers.1." in n for n in lora_before)

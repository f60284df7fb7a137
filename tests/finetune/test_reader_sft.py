"""`finetune.reader_sft`: the LLM reader's training examples are the one-turn train
conversations with their expected state as the only target tokens, and two steps on the tiny
model move every LoRA B matrix and write a manifest of kind ``reader``."""

from __future__ import annotations

import json

import pytest

from agent.catalog import load_file
from agent.evaluation import conversations as gen


def demo_items():
    return load_file(gen.DEMO_FILE.with_name("demo_items.jsonl")).items


def test_examples_are_the_one_turn_train_conversations_with_their_expected_json():
    from finetune.reader_sft import examples

    convs = gen.load(gen.DEMO_FILE)
    pairs = examples(convs, demo_items())
    one_turn_train = [
        c
        for c in convs
        if c.split == "train"
        and sum(m["role"] == "user" for m in c.messages) == 1
        and not c.expected.get("preferences")
    ]
    assert len(pairs) == len(one_turn_train) > 0
    texts = {conversation[-1]["content"] for conversation, _ in pairs}
    assert not texts & {m["content"] for c in convs if c.split == "dev" for m in c.messages}
    first = next(c for c in one_turn_train if c.kind == "like_and_dislike")
    target = next(t for conv, t in pairs if conv[-1]["content"] == first.messages[0]["content"])
    titles = {it.id: it.title for it in demo_items()}
    want = {}
    for sentiment in ("liked", "disliked"):
        ids = [i for i, s in first.expected["mentions"].items() if s == sentiment]
        if ids:
            want[sentiment] = [titles[i] for i in ids]
    assert json.loads(target) == want


def test_tokenize_masks_the_prompt_and_targets_the_answer_and_end_of_turn(packaged_model):
    from transformers import AutoTokenizer

    from agent.llm.engine import prompt_ids
    from finetune.reader_sft import tokenize

    tokenizer = AutoTokenizer.from_pretrained(packaged_model)
    conversation = [{"role": "system", "content": "Read."}, {"role": "user", "content": "a comedy"}]
    row = tokenize(tokenizer, conversation, '{"genres": ["Comedy"]}')
    prompt = prompt_ids(tokenizer, conversation)
    assert row["input_ids"][: len(prompt)] == prompt
    assert row["labels"][: len(prompt)] == [-100] * len(prompt)
    answer = tokenizer.decode(row["input_ids"][len(prompt) :])
    assert answer.startswith('{"genres": ["Comedy"]}<|im_end|>')


@pytest.mark.slow
def test_two_steps_move_every_lora_b_and_write_the_manifest(tiny_lora, tmp_path):
    from safetensors.torch import load_file as load_tensors

    from finetune.reader_sft import ReaderSFTConfig, train

    cfg = ReaderSFTConfig(
        output_dir=tmp_path / "run",
        **tiny_lora,
    )
    adapter = train(cfg)
    weights = load_tensors(str(adapter / "adapter_model.safetensors"))
    b = {k: v for k, v in weights.items() if "lora_B" in k}
    assert b, "no LoRA B matrices saved"
    assert all(float(v.abs().max()) > 0 for v in b.values()), "two steps left a lora_B at zero"
    assert all(".layers.1." in k for k in weights), "LoRA reached a layer below the top one"
    manifest = json.loads((adapter / "manifest.json").read_text())
    assert manifest["kind"] == "reader"
    assert manifest["examples"]["demo"] > 0
    assert manifest["train_loss"] == manifest["train_loss"] and manifest["train_loss"] > 0
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-2").is_dir()

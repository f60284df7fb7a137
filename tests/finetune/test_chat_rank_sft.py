"""`finetune.chat_rank_sft`: the conversation reranker's rows are the serving prompt with the
recommended film's label as the only target; the eval's requests are never trained on; two steps
on the tiny model move every LoRA B matrix and write a manifest of kind ``chat_ranker``; the shared
base config builds the training arguments."""

from __future__ import annotations

import json
from dataclasses import asdict
from types import SimpleNamespace

import pytest

from agent.catalog import Item
from agent.pipeline.ranker import CANDIDATES, LABELS, RankRequest


def example(text="I liked Alien. Something scary?", target=3):
    from finetune.chat_rank_sft import ChatRankExample

    items = [Item(f"i{n}", f"Film {n}", categories=("Horror",), year=1980 + n) for n in range(CANDIDATES)]
    scores = [1.0 - n / 20 for n in range(CANDIDATES)]
    liked = [Item("alien", "Alien", categories=("Horror", "Sci-Fi"), year=1979)]
    req = RankRequest.for_chat(text, items, scores, liked)
    return ChatRankExample(text, [it.id for it in items], list(req.history), list(req.candidates), scores, target)


def test_a_row_is_the_serving_prompt_and_the_label_of_the_recommended_film(packaged_model):
    from transformers import AutoTokenizer

    from agent.llm.engine import prompt_ids, single_token_ids
    from agent.pipeline.ranker import rank_conversation
    from finetune.chat_rank_sft import tokenize

    tokenizer = AutoTokenizer.from_pretrained(packaged_model)
    label_ids = single_token_ids(tokenizer, LABELS)
    e = example(target=3)
    row = tokenize(e, tokenizer, label_ids, None)
    prompt = prompt_ids(tokenizer, rank_conversation(e.liked, e.candidates, request=e.request))
    assert row["input_ids"] == [*prompt, label_ids[3]]
    assert row["labels"] == [-100] * len(prompt) + [label_ids[3]]
    text = tokenizer.decode(prompt)
    assert "They liked:\n- Alien (1979) · Horror/Sci-Fi\nThey asked: I liked Alien. Something scary?" in text
    assert "D. Film 3 (1983) · Horror" in text
    with_prior = tokenize(e, tokenizer, label_ids, 1.5)
    assert len(with_prior["prior"]) == len(LABELS) and with_prior["prior"][0] > with_prior["prior"][19]


class _FakeSetup:
    def __init__(self, texts):
        self.requests = [SimpleNamespace(text=t, targets=["x"]) for t in texts]
        self.closed = False

    def close(self):
        self.closed = True


def test_a_cached_example_from_an_eval_request_is_refused(tmp_path, monkeypatch):
    from agent.evaluation import chat_eval
    from finetune.chat_rank_sft import ChatRankSFTConfig, load_or_plan
    from finetune.feedback_data import LeakError

    texts = [f"I liked film {n}. Suggest one." for n in range(50)]
    setup = _FakeSetup(texts)
    monkeypatch.setattr(chat_eval, "mdd_setup", lambda *a, **k: setup)
    cfg = ChatRankSFTConfig(output_dir=tmp_path, data=tmp_path, mdd=tmp_path, eval_limit=10)
    held_out = {r.text for r in chat_eval.mdd_sample(setup.requests, 0, 10)}
    outside = next(t for t in texts if t not in held_out)
    (tmp_path / "examples.jsonl").write_text(json.dumps(asdict(example(outside))) + "\n")
    examples, provenance = load_or_plan(cfg)
    assert [e.request for e in examples] == [outside] and setup.closed
    assert provenance == {"mdd_requests": 50, "planned": 40, "eval_held_out": 10}
    (tmp_path / "examples.jsonl").write_text(json.dumps(asdict(example(min(held_out)))) + "\n")
    with pytest.raises(LeakError, match="training requests are eval requests"):
        load_or_plan(cfg)


def test_the_base_config_builds_the_shared_training_arguments(tmp_path):
    from transformers import HfArgumentParser

    from finetune.chat_rank_sft import ChatRankSFTConfig

    (cfg,) = HfArgumentParser(ChatRankSFTConfig).parse_args_into_dataclasses(
        ["--data", "d", "--mdd", "m", "--output_dir", str(tmp_path), "--learning_rate", "3e-4"]
    )
    args = cfg.training_arguments()
    assert cfg.epochs == 2.0  # the trainer's own default over the base's 1.0
    assert args["learning_rate"] == 3e-4 and args["num_train_epochs"] == 2.0
    assert args["output_dir"] == str(tmp_path / "checkpoints") and args["gradient_checkpointing"] is False


@pytest.mark.slow
def test_two_steps_move_every_lora_b_and_write_the_manifest(tiny_lora, tmp_path, monkeypatch):
    from safetensors.torch import load_file as load_tensors

    from finetune import chat_rank_sft

    examples = [example(f"I liked film {n}. Another?", target=n % 20) for n in range(12)]
    dev = [e for e in examples if chat_rank_sft.is_dev(e.request, 5)]
    assert 0 < len(dev) < len(examples)  # the texts were picked so that both parts have some
    provenance = {"mdd_requests": 12, "planned": 12, "eval_held_out": 0}
    monkeypatch.setattr(chat_rank_sft, "load_or_plan", lambda cfg: (list(examples), provenance))
    monkeypatch.setattr(chat_rank_sft, "data_hash", lambda data: "test")
    cfg = chat_rank_sft.ChatRankSFTConfig(
        output_dir=tmp_path / "run",
        data=tmp_path,
        mdd=tmp_path,
        **tiny_lora,
        retrieval_prior=True,
    )
    adapter = chat_rank_sft.train(cfg)
    weights = load_tensors(str(adapter / "adapter_model.safetensors"))
    b = {k: v for k, v in weights.items() if "lora_B" in k}
    assert b and all(float(v.abs().max()) > 0 for v in b.values()), "two steps left a lora_B at zero"
    assert all(".layers.1." in k for k in weights), "LoRA reached a layer below the top one"
    manifest = json.loads((adapter / "manifest.json").read_text())
    assert manifest["kind"] == "chat_ranker" and manifest["examples"] == len(examples) - len(dev)
    assert manifest["retrieval_prior_scale"] is not None
    development = manifest["development"]
    assert development["requests"] == len(dev) and set(development) >= {"retrieval", "zero_shot", "tuned"}
    assert development["retrieval"]["R@1"] == sum(e.target == 0 for e in dev) / len(dev)
    assert manifest["fusion_weight"] == development["tuned"]["weight"]
    assert development["tuned"]["evidence"]["requests"] == len(dev)


def test_a_deeper_retrieval_labels_more_requests_and_keeps_retrieval_order(monkeypatch):
    from agent.evaluation import chat_eval
    from finetune.chat_rank_sft import plan_examples

    catalog = [Item(f"i{n}", f"Film {n}", categories=("Drama",), year=1950 + n) for n in range(100)]

    def plan(agent, text, k=20):
        return SimpleNamespace(items=catalog[:k], scores=[100.0 - n for n in range(k)]), None

    monkeypatch.setattr(chat_eval, "chat_plan", plan)
    monkeypatch.setattr(
        chat_eval,
        "chat_rank_request",
        lambda agent, text, items, scores, state: RankRequest.for_chat(text, items, scores),
    )
    ids = {"near": ["i5"], "deep": ["i40"], "beyond": ["i99"]}
    setup = SimpleNamespace(agent=None, titles=SimpleNamespace(ids=lambda targets: ids[targets[0]]))
    requests = [SimpleNamespace(text=f"I liked A. {t}", targets=[t]) for t in ("near", "deep", "beyond")]

    served = plan_examples(setup, requests)
    assert [(e.ids[e.target], e.deep) for e in served] == [("i5", False)]  # only the served 20
    deeper = plan_examples(setup, requests, depth=60, seed=1)
    assert [(e.ids[e.target], e.deep) for e in deeper] == [("i5", False), ("i40", True)]
    drawn = deeper[1]
    assert len(drawn.ids) == CANDIDATES and drawn.scores == sorted(drawn.scores, reverse=True)
    assert all(int(i[1:]) < 60 for i in drawn.ids) and drawn.ids != [f"i{n}" for n in range(20)]
    assert plan_examples(setup, requests, depth=60, seed=1) == deeper  # seeded

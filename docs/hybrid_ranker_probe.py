"""Issue 16 probe: does one collaborative soft token per item let the 135M LM rank?

    .venv/bin/python docs/hybrid_ranker_probe.py --data ../shared/data/ml-latest-small \\
        --work .muse/hybrid-probe --examples 800 --held-out 400

The ranking prompt as Muse builds it (recent history, then the retriever's 20 candidates under
labels A-T), with one extra token after every title: its input embedding is not a word's but a
learned projection of the item's SASRec vector (LLaRA's hybrid item representation: Liao et
al., "LLaRA: Large Language-Recommendation Assistant", SIGIR 2024). The projector (a linear
map, SASRec width -> the LM's 576) and a LoRA adapter on the top layers are trained together on
the label-logit loss of ``finetune.rank_sft`` (cross-entropy over the 20 label logits).

Data as ``rank_sft --unseen_positions 16``: the retriever is fitted without each user's last
16 training items and the examples are those positions, so the candidates look as at
inference; one user in five (by a hash of the id) is held out and never trained on, and no
example answers with a protocol validation or test item (``rank_data.guard_examples``).

Printed: N@10 over the held-out positions of retrieval order, of the hybrid ranker alone, of
the two fused (the weight chosen on the first half of the held-out positions, reported on the
second), and the shuffled probe: the candidates shown in a random order, so the list order
carries nothing, against chance (0.2272 for a uniformly random rank among 20). Saves the
projector, the adapter and the results under ``--work``. A probe, not a product path: if it
shows the LM can rank, the serving half is ``docs/prompt_embeds_probe.py``'s prompt
embeddings.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import time
from pathlib import Path

SLOT = " §"  # one token in SmolLM2's vocabulary; its embedding is replaced by the item's projection
CHANCE_N10 = 0.2272  # E[1/log2(r+1), r <= 10] for r uniform on 1..20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path(".muse/hybrid-probe"))
    parser.add_argument("--examples", type=int, default=800)
    parser.add_argument("--held-out", type=int, default=400)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--top-layers", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import numpy as np
    import torch
    import torch.nn.functional as F
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agent.evaluation.retrieval_eval import content_index, prepare
    from agent.llm.engine import prompt_ids, single_token_ids
    from agent.llm.model_files import ensure_checkpoint
    from agent.pipeline.ranker import LABELS, PromptConfig, RankRequest, fuse, rank_conversation
    from finetune.feedback_data import held_out_pairs
    from finetune.rank_data import MIN_HISTORY, build_examples, guard_examples
    from finetune.rank_sft import top_layers_lora
    from retrieval.hybrid import HybridModel, fit_hybrid
    from retrieval.metrics import ndcg_at

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    torch.set_num_threads(2)
    args.work.mkdir(parents=True, exist_ok=True)
    proto = prepare(args.data)
    train_seqs = proto.loo.train()
    folder = args.work / "retriever"
    if (folder / "model.json").exists():
        retriever = HybridModel.load(folder)
    else:
        _, content = content_index(proto, args.work / "eval")
        cut = [s[: max(MIN_HISTORY, len(s) - 16)] for s in train_seqs.values()]
        retriever = fit_hybrid([i.id for i in proto.items], content, cut, args.seed, progress=print)
        retriever.save(folder)
    everything = build_examples(retriever, train_seqs, 16, MIN_HISTORY)
    dev = {u for u in train_seqs if int(hashlib.sha1(u.encode()).hexdigest(), 16) % 5 == 0}
    examples = [e for e in everything if e.user not in dev]
    held = [e for e in everything if e.user in dev]
    random.Random(args.seed).shuffle(examples)
    random.Random(args.seed + 1).shuffle(held)
    examples, held = examples[: args.examples], held[: args.held_out]
    guard_examples(examples, held_out_pairs(proto.loo.sequences))
    print(f"{len(examples)} training examples, {len(held)} held-out positions of {len(dev)} held-out users")

    items = {item.id: item for item in proto.items}
    vectors = torch.tensor(retriever.spaces["sasrec"].items, dtype=torch.float32)  # zero rows: unknown items
    vectors = vectors / vectors.norm(dim=1, keepdim=True).clamp(min=1e-6)
    row_of = retriever.index
    model_dir = ensure_checkpoint()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    (slot_id,) = tokenizer.encode(SLOT, add_special_tokens=False)
    label_ids = torch.tensor(single_token_ids(tokenizer, LABELS))
    prompt = PromptConfig()
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(base, top_layers_lora(model_dir, 16, 32, 0.05, args.top_layers))
    width = base.get_input_embeddings().weight.shape[1]
    projector = torch.nn.Linear(vectors.shape[1], width)
    torch.nn.init.normal_(projector.weight, std=0.02)
    torch.nn.init.zeros_(projector.bias)
    # The projection starts at the scale of the word embeddings.
    scale = base.get_input_embeddings().weight.norm(dim=1).mean().item()

    def encode(example, order: list[int]) -> tuple[torch.Tensor, list[str], int]:
        """Prompt ids with a slot after every title, the items behind the slots, and the label
        position of the answer when the candidates are shown in ``order``."""
        candidates = [example.candidates[i] for i in order]
        request = RankRequest.of(example.history, candidates, [0.0] * len(candidates), items, prompt)
        shown_history = list(example.history[-prompt.history_items :])
        conversation = rank_conversation(
            [t + SLOT for t in request.history], [t + SLOT for t in request.candidates], prompt
        )
        ids = prompt_ids(tokenizer, conversation)
        slots = shown_history + candidates
        if ids.count(slot_id) != len(slots):
            raise ValueError(f"{ids.count(slot_id)} slots for {len(slots)} items: a title holds the slot token")
        return torch.tensor(ids), slots, order.index(example.target)

    def label_logits(ids: torch.Tensor, slots: list[str]) -> torch.Tensor:
        """The 20 label logits (fewer for shorter lists) after the prompt, slots projected."""
        embeds = model.get_input_embeddings()(ids).clone()
        where = (ids == slot_id).nonzero().flatten()
        item_rows = torch.tensor([row_of[i] for i in slots])
        embeds[where] = scale * projector(vectors[item_rows])
        hidden = model.get_base_model().model(inputs_embeds=embeds[None], use_cache=False).last_hidden_state[0, -1]
        return hidden @ model.get_base_model().lm_head.weight[label_ids].T

    params = [p for p in model.parameters() if p.requires_grad] + list(projector.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr)
    steps = (len(examples) + args.batch - 1) // args.batch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 10) * (1 - s / steps))
    model.train()
    started = time.perf_counter()
    for step in range(steps):
        batch = examples[step * args.batch : (step + 1) * args.batch]
        loss = 0.0
        for e in batch:
            # Training shows each list in a random order half the time: the answer's position
            # must not be all the model learns.
            order = list(range(len(e.candidates)))
            if random.random() < 0.5:
                random.shuffle(order)
            ids, slots, answer = encode(e, order)
            logits = label_logits(ids, slots)[: len(order)]
            loss = loss + F.cross_entropy(logits[None], torch.tensor([answer])) / len(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 10 == 0:
            print(f"step {step}/{steps}: loss {loss.item():.3f} ({time.perf_counter() - started:.0f} s)", flush=True)
    print(f"trained in {time.perf_counter() - started:.0f} s")
    model.save_pretrained(args.work / "adapter")
    torch.save(projector.state_dict(), args.work / "projector.pt")

    model.eval()
    rows = []
    with torch.no_grad():
        for e in held:
            ids, slots, _ = encode(e, list(range(len(e.candidates))))
            in_order = label_logits(ids, slots)[: len(e.candidates)].numpy()
            shuffled = list(range(len(e.candidates)))
            random.Random(f"{e.user}|{len(e.history)}").shuffle(shuffled)  # the same order every run
            ids, slots, answer = encode(e, shuffled)
            probe = label_logits(ids, slots)[: len(e.candidates)].numpy()
            rows.append((e, in_order, shuffled, answer, probe))

    def n10(scores, target: int) -> float:
        rank = 1 + int((np.asarray(scores) > scores[target]).sum())
        return ndcg_at(rank, 10)

    half = len(rows) // 2
    grid = [round(w, 2) for w in np.arange(0, 1.0001, 0.05)]

    def fused(part, w):
        return float(np.mean([n10(fuse(e.scores, s, w), e.target) for e, s, *_ in part]))

    weight = max(grid, key=lambda w: (fused(rows[:half], w), -w))
    test = rows[half:]
    result = {
        "examples": len(examples),
        "held_out_positions": len(test),
        "retrieval_order": float(np.mean([n10(np.asarray(e.scores), e.target) for e, *_ in test])),
        "hybrid_alone": float(np.mean([n10(s, e.target) for e, s, *_ in test])),
        "fused": fused(test, weight),
        "fusion_weight": weight,
        "shuffled_probe": float(np.mean([n10(p, answer) for *_, answer, p in test])),
        "shuffled_probe_all": float(np.mean([n10(p, answer) for *_, answer, p in rows])),
        "chance": CHANCE_N10,
        "seconds": round(time.perf_counter() - started),
    }
    (args.work / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

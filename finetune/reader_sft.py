"""The LLM reader's LoRA adapter: the base model tuned to write one chat turn as the JSON of
``agent.pipeline.llm_reader.TurnFormat`` (LoRA: Hu et al., ICLR 2022).

Each example is one user turn of a generated conversation's ``train`` split
(``agent.evaluation.conversations``: the shipped demo's, and with ``--data`` also conversations
generated from a MovieLens folder's catalog), its prompt exactly as the reader sends it
(``TurnFormat.conversation`` through the chat template) and, as the only target tokens, the
JSON its expected state holds (``TurnFormat.target``) and the end of the assistant's turn.
Conversations of more than one user turn are left out (their expected state is the whole
conversation's, not one turn's), and so are those with soft preferences (the format has none).
The development split is never trained on; ``muse eval --stage chat --reader-adapter`` scores it.

Ready-to-paste (from the repository root)::

    .venv/bin/python -m finetune.reader_sft --output_dir .muse/train/reader-v1
    .venv/bin/python -m finetune.reader_sft --output_dir .muse/train/reader-v2 --top_layers 10 \
        --demo_generated 2400 --epochs 1 --learning_rate 1e-3
    .venv/bin/python -m finetune.reader_sft --output_dir .muse/train/reader-v1 \\
        --data ../shared/data/ml-latest-small      # also the MovieLens catalog's conversations
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent.catalog import Item
from agent.llm.engine import prompt_ids
from agent.pipeline.llm_reader import TurnFormat
from agent.pipeline.reader import Constraints, Mention, _Turn
from finetune.base_config import LoRATrainConfig, train_resuming
from finetune.manifest import training_manifest
from finetune.rank_sft import data_hash, top_layers_lora

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class ReaderSFTConfig(LoRATrainConfig):
    conversations: Path | None = field(
        default=None, metadata={"help": "conversations file of the demo catalog; default: the shipped one"}
    )
    data: Path | None = field(
        default=None,
        metadata={"help": "a MovieLens folder: also train on conversations generated from its catalog"},
    )
    generated: int = field(default=500, metadata={"help": "conversations generated from --data's catalog"})
    demo_generated: int = field(
        default=0,
        metadata={
            "help": "also train on this many more demo conversations, generated with seed + 1 (their train "
            "split only: the development phrasings stay unseen)"
        },
    )
    top_layers: int = field(default=30, metadata={"help": "LoRA on the top N transformer layers only"})
    learning_rate: float = field(default=5e-4, metadata={"help": "peak learning rate (linear decay)"})
    epochs: float = field(default=2.0, metadata={"help": "passes over the examples"})


def expected_turn(conv, items: dict[str, Item]) -> _Turn:
    """The reading of a one-turn conversation ``conv`` its expected state states (ids ->
    ``items``). Raises ``KeyError`` for a film id the catalog lacks."""
    c = conv.constraints()  # the conversation's own reading of its expected constraints
    turn = _Turn(**{name: getattr(c, name) for name in Constraints.__dataclass_fields__})
    expected = conv.expected
    turn.mentions = [Mention(i, items[i].title, items[i].title, s) for i, s in expected["mentions"].items()]
    turn.count = expected.get("count")
    turn.greeting = expected.get("unclear") == "greeting"
    return turn


def examples(conversations, items: list[Item], popularity=()) -> list[tuple[list[dict], str]]:
    """(prompt conversation, target JSON) for each one-turn ``train`` conversation over ``items``."""
    from agent.pipeline.reader import Vocabulary

    fmt = TurnFormat(Vocabulary(items, popularity))
    by_id = {it.id: it for it in items}
    out = []
    for conv in conversations:
        users = [m["content"] for m in conv.messages if m["role"] == "user"]
        if conv.split != "train" or len(users) != 1 or conv.expected.get("preferences"):
            continue  # the format has no soft preferences: the rules read those
        out.append((fmt.conversation(users[0]), fmt.target(expected_turn(conv, by_id))))
    return out


def tokenize(tokenizer, conversation: list[dict], target: str) -> dict:
    """A row whose targets are the answer's tokens and the end of the turn, as the chat template
    writes them after the prompt ``prompt_ids`` gives (the prompt itself is masked)."""
    prompt = prompt_ids(tokenizer, conversation)
    full = tokenizer.apply_chat_template([*conversation, {"role": "assistant", "content": target}], tokenize=True)
    full = list(full["input_ids"] if hasattr(full, "keys") else full)
    if full[: len(prompt)] != prompt:
        raise ValueError("the chat template writes the prompt differently with an answer after it")
    return {"input_ids": full, "labels": [-100] * len(prompt) + full[len(prompt) :]}


def train(cfg: ReaderSFTConfig) -> Path:
    """Build the examples, train, and save ``output_dir/adapter`` with its manifest (kind
    ``reader``). Resumes from the newest checkpoint. Raises ``ValueError`` when no example is found."""
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from agent.catalog import load_dataset, load_file
    from agent.evaluation import conversations as gen
    from agent.llm.model_files import ensure_checkpoint

    started = time.perf_counter()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = Path(cfg.model_dir) if cfg.model_dir else ensure_checkpoint()
    demo = load_file(Path(gen.__file__).resolve().parents[1] / "data" / "demo_items.jsonl").items
    pairs = examples(gen.load(cfg.conversations or gen.DEMO_FILE), demo)
    sources = {"demo": len(pairs)}
    if cfg.demo_generated:
        more = examples(gen.generate(demo, cfg.demo_generated, cfg.seed + 1), demo)
        sources["demo generated"] = len(more)
        pairs += more
    if cfg.data is not None:
        from collections import Counter

        dataset = load_dataset(cfg.data)
        popularity = [i for i, _ in Counter(e.item_id for e in dataset.interactions).most_common()]
        generated = gen.generate(dataset.items, cfg.generated, cfg.seed, popularity)
        more = examples(generated, dataset.items, popularity)
        sources[str(cfg.data)] = len(more)
        pairs += more
    if not pairs:
        raise ValueError("no one-turn train conversations to learn from")
    random.Random(cfg.seed).shuffle(pairs)
    logger.info(f"{len(pairs)} training turns ({sources})")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = [tokenize(tokenizer, conversation, target) for conversation, target in pairs]
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=cfg.torch_dtype())
    model = get_peft_model(
        model, top_layers_lora(model_dir, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.top_layers)
    )
    args = TrainingArguments(**cfg.training_arguments(), remove_unused_columns=False)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
    )
    result = train_resuming(trainer, args.output_dir)
    adapter_dir = out / "adapter"
    trainer.model.save_pretrained(adapter_dir)
    manifest = training_manifest(
        "reader",
        cfg,
        model_dir,
        result,
        started,
        data_hash=data_hash(cfg.data) if cfg.data is not None else None,
        lora_r=cfg.lora_r,
        examples=sources,
    )
    (adapter_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    logger.info(f"adapter saved in {adapter_dir}")
    return adapter_dir


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    (cfg,) = HfArgumentParser(ReaderSFTConfig).parse_args_into_dataclasses(argv)
    train(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())

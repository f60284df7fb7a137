"""Judge ranker adapters side by side on the same held-out positions (never on test).

Each training run saves its held-out positions (``output_dir/held_out.jsonl``); this scores
retrieval order, the base model and every given adapter on one such file, with the prompt
settings of the first adapter's manifest::

    .venv/bin/python -m finetune.compare --data ../shared/data/ml-latest-small \\
        --held_out .muse/train/rank-v2/held_out.jsonl \\
        --adapter rank-v1=adapters/rank-v1 --adapter rank-v2=.muse/train/rank-v2/adapter
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from agent.evaluation.retrieval_eval import prepare
    from agent.llm.model_files import ensure_checkpoint
    from agent.pipeline.ranker import prompt_config_of
    from finetune.rank_sft import held_out_metrics, load_examples

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset folder the positions come from")
    parser.add_argument("--held_out", type=Path, required=True, help="held_out.jsonl of a training run")
    parser.add_argument("--adapter", action="append", required=True, help="NAME=FOLDER, repeatable")
    parser.add_argument("--model_dir", type=Path, default=None, help="base checkpoint (default: packaged)")
    args = parser.parse_args(argv)
    adapters = dict(a.split("=", 1) for a in args.adapter)
    adapters = {name: Path(folder) for name, folder in adapters.items()}
    prompt = prompt_config_of(next(iter(adapters.values())))
    items = {item.id: item for item in prepare(args.data).items}
    report = held_out_metrics(
        args.model_dir or ensure_checkpoint(),
        adapters,
        load_examples(args.held_out),
        items,
        prompt,
    )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

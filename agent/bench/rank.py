"""`muse bench rank`: the same ranking requests through each way of running the ranker, side by side.

200 distinct 20-candidate ranking prompts per concurrency level are built from the shipped demo
catalog (histories from its users, candidates drawn with a fixed seed; no prompt repeats across
levels), so the benchmark needs no dataset. Each
engine first answers a few warm-up requests (not counted), then the requests at each
concurrency level:

- vLLM (the adapter as a LoRA module, ``MUSE_RANK_ENGINE=lora``): ``c`` client threads, each
  sending one request at a time (the server batches them);
- transformers (in-process, the adapter applied by peft) and merged (in-process, the adapter
  folded into a copy of the base weights, ``MUSE_RANK_ENGINE=merged``): requests taken ``c`` at
  a time as one padded batch.

Latency is per request as the caller sees it; throughput is requests per second of wall time.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from agent.bench.latency import percentile
from agent.llm import registry
from agent.llm.engine import Engine, Message
from agent.llm.hardware import resolve_dtype
from agent.llm.model_files import model_path
from agent.pipeline.ranker import LABELS, PromptConfig, RankRequest, rank_conversation

logger = logging.getLogger(__name__)

DEMO_DIR = Path(__file__).resolve().parents[1] / "data"


def demo_conversations(n: int = 200, seed: int = 0, prompt: PromptConfig | None = None) -> list[list[Message]]:
    from agent.catalog import load_file

    prompt = prompt or PromptConfig()

    items = {i.id: i for i in load_file(DEMO_DIR / "demo_items.jsonl").items}
    events = load_file(DEMO_DIR / "demo_interactions.jsonl").interactions
    histories: dict[str, list[str]] = {}
    for e in sorted(events, key=lambda e: e.timestamp):
        histories.setdefault(e.user_id, []).append(e.item_id)
    rng = random.Random(seed)
    users, ids = sorted(histories), sorted(items)
    out = []
    for k in range(n):
        history = histories[users[k % len(users)]]
        end = rng.randint(min(3, len(history)), len(history))  # distinct prompts: no free cache hits
        candidates = rng.sample([i for i in ids if i not in history[:end]], len(LABELS))
        request = RankRequest.of(history[:end], candidates, [0.0] * len(candidates), items, prompt)
        out.append(rank_conversation(request.history, request.candidates, prompt))
    return out


def run_level(engine: Engine, conversations, concurrency: int, batched: bool, adapter: str | None) -> dict:
    latencies: list[float] = []

    def one(chunk):
        t = time.perf_counter()
        engine.label_logprobs(chunk, LABELS, adapter)
        latencies.extend([time.perf_counter() - t] * len(chunk))

    started = time.perf_counter()
    if batched:
        for s in range(0, len(conversations), concurrency):
            one(conversations[s : s + concurrency])
    else:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lambda c: one([c]), conversations))
    wall = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "requests": len(conversations),
        "p50_s": round(percentile(latencies, 0.5), 4),
        "p95_s": round(percentile(latencies, 0.95), 4),
        "throughput_rps": round(len(conversations) / wall, 2),
        "wall_s": round(wall, 1),
    }


def bench_engine(
    engine: Engine, conversations, levels: Sequence[int], batched: bool, adapter: str | None, warmup: int = 5
) -> list[dict]:
    engine.label_logprobs(demo_conversations(warmup, seed=1), LABELS, adapter)
    n = len(conversations) // len(levels)
    return [run_level(engine, conversations[k * n : (k + 1) * n], c, batched, adapter) for k, c in enumerate(levels)]


def run_rank_bench(settings, n: int = 200, levels: Sequence[int] = (1, 8)) -> dict:
    from agent.llm.session import open_engine
    from agent.pipeline.ranker import prompt_config_of

    adapter = registry.ranker_adapter(settings)
    prompt = prompt_config_of(registry.adapters(settings).get(adapter) if adapter else None)
    # Each level gets its own prompts: repeats would be free prefix-cache hits for vLLM.
    conversations = demo_conversations(n * len(levels), prompt=prompt)
    report: dict = {
        "requests": n,
        "candidates": len(LABELS),
        "adapter": adapter,
        "dtype": resolve_dtype(settings.llm_dtype),
    }
    for name in ("transformers", "merged", "vllm"):
        logger.info(f"benchmarking {name} ...")
        if name == "merged":
            if adapter is None:
                continue
            from agent.llm.merged import merged_checkpoint
            from agent.llm.transformers_engine import TransformersEngine

            folder = merged_checkpoint(model_path(settings), registry.adapters(settings)[adapter], settings.data_dir)
            report[name] = bench_engine(
                TransformersEngine(folder, dtype=resolve_dtype(settings.llm_dtype)),
                conversations,
                levels,
                batched=True,
                adapter=None,
            )
        else:
            with open_engine(settings, engine=name, with_adapters=True) as engine:
                report[name] = bench_engine(
                    engine, conversations, levels, batched=name == "transformers", adapter=adapter
                )
        logger.info(json.dumps(report[name]))
    report["throughput_over_transformers"] = {
        name: {
            str(v["concurrency"]): round(v["throughput_rps"] / t["throughput_rps"], 2)
            for v, t in zip(report[name], report["transformers"])
        }
        for name in ("merged", "vllm")
        if name in report
    }
    return report

"""`muse loop simulate`: the feedback loop replayed on a dataset, without live users.

Each user's training sequence (everything before the protocol's validation item) is replayed
on a clock of its own (item ``i`` at hour ``i``):

- The serving retriever is fitted without each user's last ``unseen`` training items, so what
  Muse recommends from a user's past was fitted on that past only (for that user).
- Round ``r`` (1..N) shows each user, at a position ``p_r`` inside those last items, the top
  ``shown`` of 20 candidates ordered by the current ranker adapter (fused with retrieval at
  the weight the last evaluation chose). The simulated user clicks the shown items that are in
  their real future within the training part (``train[p_r:]``; never the validation or test
  item) and skips the rest. Impressions and events go into a real SQLite event store
  (``agent.store``, ``work_dir/muse.db``: ``MUSE_DATA_DIR=work_dir muse finetune ab-report``
  reads it), and the user's real interactions up to ``p_r`` are logged there as views.
- Then the round builds data from its impressions (``finetune.feedback_data``, with the leakage
  guard on every user's validation and test items), trains a child of the current adapter
  (``finetune.feedback_train``), loads it into the running engine (runtime LoRA loading), and
  evaluates it.

Evaluation is ``muse eval --stage rerank``'s: the protocol's validation and test users, the
retriever fitted on everything before them, retrieved through Chroma, the candidates reordered by
the adapter fused with retrieval, the fusion weight chosen on validation (never on test). Round
0 is the starting adapter before any feedback. Every round's result is saved in ``work_dir``; a
rerun resumes after the last finished round.

    muse loop simulate --data ../shared/data/ml-latest-small --rounds 2 --json
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from agent.catalog import Interaction
from agent.evaluation.rerank_eval import write_json as _write_json
from finetune.feedback_data import held_out_pairs
from finetune.feedback_train import FeedbackJob, FeedbackTrainConfig

logger = logging.getLogger(__name__)

HOUR = 3600.0
T0 = 1.6e9  # the replay clock's origin (any fixed time)
MIN_HISTORY = 3
# Where a round's training differs from `muse finetune train`'s defaults.
ROUND_TRAINING = {"learning_rate": 5e-4}


@dataclass
class LoopConfig:
    data: Path = field(metadata={"help": "dataset folder (e.g. ml-latest-small)"})
    work_dir: Path = field(default=Path(".muse/loop"), metadata={"help": "store, adapters, results (resume point)"})
    rounds: int = field(default=2, metadata={"help": "feedback rounds after round 0"})
    start: str | None = field(default=None, metadata={"help": "starting adapter folder; None: the base model"})
    model_dir: Path | None = field(default=None, metadata={"help": "base checkpoint; default: the packaged model"})
    users: int = field(default=0, metadata={"help": "simulate this many users (0: all)"})
    shown: int = field(default=10, metadata={"help": "items shown per impression"})
    unseen: int = field(default=16, metadata={"help": "last training items the serving retriever never saw"})
    seed: int = field(default=0, metadata={"help": "seed of the retriever fits, the user sample and training"})
    training: FeedbackTrainConfig = field(
        default_factory=lambda: FeedbackTrainConfig(**ROUND_TRAINING),
        metadata={
            "help": "how each round trains (`muse finetune train`'s options; its seed is the loop's, its dtype "
            "also the in-process engine's)"
        },
    )


def positions(length: int, round_no: int, cfg: LoopConfig) -> int:
    """Where round ``round_no`` (1-based) shows a user with ``length`` training items."""
    first = max(MIN_HISTORY, length - cfg.unseen)
    step = max(1, cfg.unseen // max(1, cfg.rounds))
    return min(length - 1, first + (round_no - 1) * step)


def engaged(shown: list[str], future: list[str]) -> list[str]:
    """The simulated user's clicks: shown items that are in their real future."""
    ahead = set(future)
    return [i for i in shown if i in ahead]


class Loop:
    def __init__(self, cfg: LoopConfig):
        from agent.evaluation.retrieval_eval import prepare

        self.cfg = cfg
        self.work = Path(cfg.work_dir)
        self.work.mkdir(parents=True, exist_ok=True)
        self.proto = prepare(cfg.data)
        self.items = {item.id: item for item in self.proto.items}
        train = self.proto.loo.train()
        users = sorted(u for u, s in train.items() if len(s) > MIN_HISTORY)
        if cfg.users:
            users = sorted(random.Random(cfg.seed).sample(users, min(cfg.users, len(users))))
        self.train = {u: train[u] for u in users}
        # The protocol's validation and test items: never a training answer.
        self.held_out = held_out_pairs(self.proto.loo.sequences)

    # ------------------------------------------------------------ fitted once, cached on disk

    def serving_retriever(self):
        from agent.evaluation.retrieval_eval import content_index
        from retrieval.hybrid import HybridModel, fit_hybrid

        folder = self.work / "serving-retriever"
        if (folder / "model.json").exists():
            return HybridModel.load(folder)
        _, content = content_index(self.proto, self.work / "eval")
        cut = [s[: max(MIN_HISTORY, len(s) - self.cfg.unseen)] for s in self.proto.loo.train().values()]
        model = fit_hybrid([i.id for i in self.proto.items], content, cut, self.cfg.seed, progress=logger.info)
        model.save(folder)
        return model

    def store(self):
        from agent.store import SQLiteStore

        fresh = not (self.work / "muse.db").exists()
        store = SQLiteStore(self.work / "muse.db")
        if fresh:
            store.upsert_items(self.proto.items)
        return store

    # ------------------------------------------------------------ one round

    def replay(self, store, round_no: int, adapter: str | None, weight: float, engine, model, prompt) -> dict:
        """Log the users' real past up to this round's position, show them what the current
        ranker picks, log what they click and skip; returns counts and the impression ids."""
        from agent.pipeline.ranker import Ranker, RankRequest
        from agent.store.history import history_of
        from finetune.rank_data import top_candidates

        views, plans = [], []
        for user, seq in self.train.items():
            p = positions(len(seq), round_no, self.cfg)
            views += [Interaction(user, seq[i], T0 + i * HOUR, "view", key=f"view|{user}|{i}") for i in range(p)]
            plans.append((user, p))
        store.add_events(views)  # idempotent: earlier rounds' views are skipped by key
        histories = [history_of(store, user) for user, _ in plans]
        tops = top_candidates(model, histories)
        requests = [RankRequest.of(h, ids, scores, self.items, prompt) for h, (ids, scores) in zip(histories, tops)]
        ranker = Ranker(engine, adapter, weight, prompt) if adapter else None
        orders = ranker.rank(requests) if ranker and weight > 0 else [list(range(len(r.candidates))) for r in requests]
        counts = {"impressions": 0, "shown": 0, "clicked": 0, "users_with_a_click": 0}
        impression_ids = []
        # A replay cut short (the process stopped mid-round) left some of this round's impressions:
        # they are reused, not shown twice; their clicks and skips are keyed, so logging them again is a no-op.
        # (A short sequence can put two rounds at one position: the ranking adapter tells them apart.)
        ranked_by = adapter or "retrieval"
        logged = {(i.user_id, i.created_at): i for i in store.impressions() if i.model == ranked_by}
        for (user, p), (ids, scores), order in zip(plans, tops, orders):
            if not ids:
                continue
            at = T0 + p * HOUR - HOUR / 2  # after the past, before the future
            if (user, at) in logged:
                imp, shown = logged[user, at].id, list(logged[user, at].item_ids)
            else:
                shown = [ids[i] for i in order[: self.cfg.shown]]
                imp = store.add_impression(
                    user, shown, [scores[i] for i in order[: self.cfg.shown]], ranked_by, candidates=ids, created_at=at
                )
            clicks = set(engaged(shown, self.train[user][p:]))
            store.add_events(
                [
                    Interaction(
                        user, i, at + 1, "click" if i in clicks else "skip", impression_id=imp, key=f"{imp}|{i}"
                    )
                    for i in shown
                ]
            )
            impression_ids.append(imp)
            counts["impressions"] += 1
            counts["shown"] += len(shown)
            counts["clicked"] += len(clicks)
            counts["users_with_a_click"] += bool(clicks)
        counts["click_rate"] = round(counts["clicked"] / max(1, counts["shown"]), 4)
        return {**counts, "impression_ids": impression_ids}

    def evaluate(self, engine, adapter: str | None, prompt, splits: dict[str, list]) -> dict:
        """The rerank protocol for one adapter: the weight validated as serving would use it
        (``agent.evaluation.rerank_eval.validated_weight``), test reported."""
        from agent.evaluation.rerank_eval import llm_rows, split_report, validated_weight

        row = "tuned" if adapter else "zero_shot"
        scores = {split: llm_rows(engine, prompt, users, self.items, adapter) for split, users in splits.items()}
        weight, _ = validated_weight(splits["validation"], scores["validation"])
        out = {}
        for split, users in splits.items():
            report = split_report(users, {row: scores[split]}, weight)
            out[split] = {
                "metrics": report["metrics"],
                "fusion_weight": weight,
                "valid_users": report["valid_users"],
                "valid_subset_N@10": {name: round(r["valid_subset"]["N@10"], 4) for name, r in report["rows"].items()},
            }
        return out

    def check_resume(self) -> None:
        """A work folder holds one run: resuming with other settings would mix two experiments
        (the number of rounds too: it sets where in the sequence each round shows)."""
        file = self.work / "config.json"
        mine = {k: str(v) for k, v in asdict(self.cfg).items()}
        if file.exists() and json.loads(file.read_text()) != mine:
            raise ValueError(f"{self.work} holds a run with other settings ({file}); pass another --work-dir")
        _write_json(file, mine)

    def run(self) -> dict:
        from agent.evaluation.rerank_eval import protocol_candidates
        from agent.llm.model_files import ensure_checkpoint
        from agent.llm.registry import discover_adapters
        from agent.llm.transformers_engine import TransformersEngine
        from agent.pipeline.ranker import prompt_config_of
        from finetune.feedback_data import BuildConfig, build_data
        from finetune.feedback_train import train

        cfg, started = self.cfg, time.perf_counter()
        self.check_resume()
        model_dir = Path(cfg.model_dir) if cfg.model_dir else ensure_checkpoint()
        registry = self.work / "adapters"
        registry.mkdir(exist_ok=True)
        adapter = None
        if cfg.start:
            adapter = Path(cfg.start).name
            if not (registry / adapter).exists():
                shutil.copytree(cfg.start, registry / adapter)
        prompt = prompt_config_of(registry / adapter if adapter else None)
        splits = protocol_candidates(cfg.data, self.work, cfg.seed)
        serving = self.serving_retriever()
        store = self.store()
        engine = TransformersEngine(model_dir, discover_adapters(registry), dtype=cfg.training.dtype)
        rounds = []
        for round_no in range(cfg.rounds + 1):
            file = self.work / f"round-{round_no}.json"
            if file.exists():  # finished earlier: resume after it
                rounds.append(json.loads(file.read_text()))
                adapter = rounds[-1]["adapter"]
                logger.info(f"round {round_no}: done earlier ({adapter})")
                continue
            t = time.perf_counter()
            result: dict = {"round": round_no}
            if round_no > 0:
                weight = rounds[-1]["validation"]["fusion_weight"]
                logger.info(f"round {round_no}: replaying {len(self.train)} users with {adapter or 'retrieval order'}")
                feedback = self.replay(store, round_no, adapter, weight, engine, serving, prompt)
                data = self.work / f"round-{round_no}" / "data"
                report = build_data(
                    store,
                    data,
                    BuildConfig(cutoff=float("inf"), prompt=prompt),
                    self.held_out,
                    impression_ids=set(feedback.pop("impression_ids")),
                )
                result["feedback"] = {**feedback, "rows": report["files"], "skipped": report["skipped"]}
                logger.info(f"round {round_no}: {feedback}, rows {report['files']}")
                name = f"loop-r{round_no}"
                if not (registry / name).exists():
                    job = FeedbackJob(data=data, name=name, registry=registry, parent=adapter)
                    train(job, replace(cfg.training, model_dir=model_dir, output_dir=None, seed=cfg.seed))
                if name not in engine.adapters:
                    engine.load_adapter(name, registry / name)
                adapter = name
            result["adapter"] = adapter
            logger.info(f"round {round_no}: evaluating {adapter or 'the base model'}")
            result.update(self.evaluate(engine, adapter, prompt, splits))
            result["seconds"] = round(time.perf_counter() - t, 1)
            logger.info(
                f"round {round_no}: validation N@10 {result['validation']['metrics']['N@10']:.4f}, "
                f"test N@10 {result['test']['metrics']['N@10']:.4f}"
            )
            _write_json(file, result)
            rounds.append(result)
        engine.close()
        first, last = rounds[0]["validation"]["metrics"]["N@10"], rounds[-1]["validation"]["metrics"]["N@10"]
        return {
            "rounds": rounds,
            "validation_N@10_change": round(last / first - 1, 4) if first else None,
            "config": json.loads(json.dumps(asdict(cfg), default=str)),
            "users": len(self.train),
            "seconds": round(time.perf_counter() - started, 1),
        }


def simulate(cfg: LoopConfig) -> dict:
    if cfg.rounds < 1:
        raise ValueError(f"--rounds must be at least 1, got {cfg.rounds}")
    if cfg.start and not (Path(cfg.start) / "adapter_config.json").exists():
        raise ValueError(f"{cfg.start} holds no peft adapter")
    return Loop(cfg).run()

"""The `muse` command: one entry point, one subcommand per job.

    muse ingest PATH [--facts KB] load a dataset folder (or items/interactions files) into the store,
                                KB: film facts (director, cast, ...) joined to its items
    muse index                  fit the retrieval models and (re)build the Chroma index
    muse recommend --user ID    top-k for a user: retrieval stage, or the service with --url
    muse serve [--demo]         the HTTP service (chat, recommendations, feedback) on :8000
    muse chat --user ID         a terminal chat against the service (or one started in-process)
    muse eval --data PATH       the LlamaRec protocol: retrieval through Chroma (+ the LLM ranker);
                                --stage texts: each way of writing texts on the same picks
    muse llm serve              run the vLLM server with the base model and every adapter
    muse bench rank             ranking latency/throughput, vLLM vs transformers
    muse bench agent            N requests to a running service: invariants, grounding, latency
    muse bench retrieval        a synthetic catalog of N items in a Chroma server: build, p95, recall
    muse finetune build-data    logged impressions + feedback -> SFT/DPO/KTO JSONL (leak-guarded)
    muse finetune train         a new ranker adapter (SFT, DPO or KTO) from those files, into the registry
    muse finetune promote       candidate vs current adapter on held-out data; promote only if better
    muse finetune text-data     text adapter data: sampled texts that pass the checks (self-distillation)
    muse finetune promote-text  text adapter vs base model on held-out picks; promote only if better
    muse finetune ab-report     engagement per adapter (A/B arm) from logged impressions
    muse loop simulate          replay ml-latest-small users through the feedback loop, N rounds
    muse demo                   ingest the shipped demo catalog, index it, show recommendations
    muse setup-model            convert the packaged SmolLM2 model into a cached checkpoint

Messages go to stderr, results to stdout, so ``--json`` output can be piped.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from contextlib import ExitStack
from pathlib import Path

from agent.llm import registry
from agent.llm.hardware import resolve_dtype

DEMO_DIR = Path(__file__).parent / "data"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _settings():
    from agent.config import Settings

    return Settings()


def cmd_ingest(args: argparse.Namespace) -> int:
    from agent.catalog import Dataset, IngestError, check_references, load_dataset, load_file
    from agent.store import open_store

    settings = _settings()
    dataset = load_dataset(args.path) if args.path.is_dir() else load_file(args.path)
    if getattr(args, "facts", None) is not None:
        from agent.knowledge import join_facts, load_facts

        if not dataset.items:
            raise IngestError(args.facts, None, "--facts joins to items: give a dataset or items file")
        items, report = join_facts(dataset.items, load_facts(args.facts))
        dataset = Dataset(items, dataset.interactions, dataset.source)
        say(f"{args.facts}: {report.summary()}")
    store = open_store(settings.store_url)
    if dataset.items:
        store.upsert_items(dataset.items)
    else:
        # A bare interactions file must name items the store already holds.
        check_references(Dataset(store.items(), dataset.interactions, dataset.source))
    new = store.add_events(dataset.interactions)
    say(
        f"{dataset.source}: {len(dataset.items)} items upserted, {new} new events "
        f"({len(dataset.interactions) - new} already stored)"
    )
    print(json.dumps(store.counts()))
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from agent.indexing import build_index
    from agent.store import open_store

    settings = _settings()
    report = build_index(open_store(settings.store_url), settings)
    print(json.dumps(report))
    return 0


def _filters(args: argparse.Namespace):
    from retrieval.index import Filters

    return Filters(
        categories=args.category or [], year_min=args.year_min, year_max=args.year_max, exclude_ids=args.exclude or []
    )


def cmd_recommend(args: argparse.Namespace) -> int:
    if args.url:
        return _recommend_via_service(args)
    from agent.catalog import turned_down
    from agent.indexing import load_retriever
    from agent.store import open_store
    from agent.store.history import user_sequences

    settings = _settings()
    store = open_store(settings.store_url)
    events = store.history(args.user)  # read once: the history and the dislikes both come from it
    history = user_sequences(events).get(args.user, [])
    disliked = turned_down(events)
    candidates = load_retriever(settings).retrieve(history, args.k, _filters(args), args.query, disliked=disliked)
    items = {it.id: it for it in store.get_items([c.item_id for c in candidates])}
    rows = [
        {
            "item_id": c.item_id,
            "title": items[c.item_id].title,
            "year": items[c.item_id].year,
            "categories": list(items[c.item_id].categories),
            "score": round(c.score, 4),
            "source": c.source,
        }
        for c in candidates
    ]
    if args.json:
        print(json.dumps({"user": args.user, "history": len(history), "items": rows}))
    else:
        say(f"user {args.user}: {len(history)} items of history")
        for n, r in enumerate(rows, 1):
            print(
                f"{n:>3}. {r['title']} ({r['year']}) [{', '.join(r['categories'])}] "
                f"score {r['score']} via {r['source']}"
            )
    return 0


def _recommend_via_service(args: argparse.Namespace) -> int:
    import httpx

    body = {
        "user_id": args.user,
        "k": args.k,
        "query": args.query,
        "filters": {
            "categories": args.category or [],
            "year_min": args.year_min,
            "year_max": args.year_max,
            "exclude_ids": args.exclude or [],
        },
    }
    response = httpx.post(
        f"{args.url.rstrip('/')}/v1/recommendations", json=body, timeout=120, headers=_settings().client_headers()
    )
    data = response.json()
    if response.status_code != 200:
        raise ValueError(data.get("error", {}).get("message", response.text))
    if args.json:
        print(json.dumps(data))
        return 0
    say(
        f"user {args.user}: ranked by {data['adapter'] or 'retrieval order'}"
        f"{' (degraded)' if data['degraded'] else ''} in {data['seconds']} s"
    )
    for n, it in enumerate(data["items"], 1):
        print(
            f"{n:>3}. {it['title']} ({it['year']}) [#{it['id']}] score {it['score']}\n"
            f"     why: {it['explanation']}\n     pitch: {it['draft']}"
        )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from agent.api.app import create_app
    from agent.store import open_store

    settings = _settings()
    settings.check_exposure()  # an open service on a public address fails here, before any work
    registry.ranker_adapter(settings), registry.ab_arms(settings)  # bad adapter settings fail here, before any work
    if args.demo and not open_store(settings.store_url).counts()["items"]:
        for path in (DEMO_DIR / "demo_items.jsonl", DEMO_DIR / "demo_interactions.jsonl"):
            cmd_ingest(argparse.Namespace(path=path))
    if not (settings.model_dir / "popular.json").exists():
        say("no retrieval index yet: building it")
        cmd_index(args)
    say(
        f"serving Muse on http://{settings.host}:{settings.port} (OpenAI base_url: "
        f"http://{settings.host}:{settings.port}/v1, model 'muse')"
    )
    say(access_notice(settings, open_store(settings.store_url).api_keys()))
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")
    return 0


def access_notice(settings, keys: list[dict]) -> str:
    """What `muse serve` says on start about who can reach it."""
    live = [k for k in keys if k["revoked_at"] is None]
    if settings.auth == "off":
        unused = f"; the {len(live)} API key(s) in the store are not checked" if live else ""
        return (
            f"open: no API key is checked (MUSE_AUTH=off), so Muse listens on {settings.host} only "
            f"and only this machine can reach it{unused}. To serve other machines: `muse keys create "
            "--scope admin`, then MUSE_AUTH=keys MUSE_HOST=0.0.0.0"
        )
    if not live:
        return (
            "API keys required (MUSE_AUTH=keys), and none exists yet: every request will get 401 until "
            "you run `muse keys create --scope admin` (it takes effect at once)"
        )
    return f"API keys required (MUSE_AUTH=keys): {len(live)} live key(s)"


def cmd_keys_create(args: argparse.Namespace) -> int:
    from agent.api.auth import create_key
    from agent.store import open_store

    key, row = create_key(open_store(_settings().store_url), args.scope, args.user or [], args.rate, args.name)
    who = "every user" if row["scope"] == "admin" else ", ".join(row["users"])
    say(
        f"API key {row['id']} ({row['scope']} scope, for {who}, {row['rate']}). Store it now: "
        "Muse keeps only its hash and cannot show it again."
    )
    print(key)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from agent.store import open_store

    for key in open_store(_settings().store_url).api_keys():
        print(json.dumps({k: v for k, v in key.items() if k != "hash"}))
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from agent.store import open_store

    if not open_store(_settings().store_url).revoke_api_key(args.key_id):
        raise ValueError(f"no live API key has the id {args.key_id!r} (see `muse keys list`)")
    say(f"API key {args.key_id} revoked: requests with it get 401 from now on")
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from agent.api.terminal_chat import repl

    return repl(args.user, args.url, k=args.k)


def cmd_eval(args: argparse.Namespace) -> int:
    settings = _settings()
    if args.stage == "texts":
        return _eval_texts(args, settings)
    if args.data is None:
        raise ValueError(f"--stage {args.stage} needs --data (a dataset folder)")
    if args.stage == "rerank":
        return _eval_rerank(args, settings)
    if args.stage == "chat":
        return _eval_chat(args, settings)
    if str(args.data) == "demo":
        raise ValueError("--data demo is for --stage chat; the retrieval protocol needs a dataset folder")
    from agent.evaluation.retrieval_eval import run_retrieval_eval

    report = run_retrieval_eval(
        args.data, settings.data_dir / "eval", args.split, args.seed, chroma_url=settings.chroma_url
    )
    _write_report(args, report)
    if args.json:
        print(json.dumps(report))
    else:
        rows = [("muse retrieval", report["metrics"])] + list(report["baselines"].items())
        print(
            f"{report['users']} users, {report['items']} items, {report['interactions']} "
            f"interactions; split {report['split']}, seed {report['seed']}"
        )
        _table(rows)
    return 0


def _served_agent(settings, stack: ExitStack, adapter: str | None = None):
    """``(agent, engine)``: a ``MuseAgent`` over the store ``muse serve`` answers from, and vLLM
    (``MUSE_LLM_URL``, or one started) serving the base model and, by name, ``adapter`` as LoRA."""
    from agent.indexing import load_retriever
    from agent.llm.session import open_engine
    from agent.pipeline.recommender import MuseAgent
    from agent.store import open_store

    adapters = {}
    if adapter:
        registry.check_adapter(adapter, registry.adapters(settings))
        adapters = {adapter: registry.adapters(settings)[adapter]}
    engine = stack.enter_context(open_engine(settings, engine="vllm", adapters=adapters or None))
    return MuseAgent(settings, open_store(settings.store_url), load_retriever(settings), engine), engine


def _held_out_picks(folder: Path | None):
    """The held-out picks of a ``muse finetune text-data`` folder, as a predicate on item ids."""
    if folder is None:
        return None
    from finetune.text_data import held_out

    share = json.loads((Path(folder) / "report.json").read_text())["config"]["eval_share"]
    return lambda item_id: held_out(item_id, share)


def _text_eval(settings, answers: int, seed: int, adapter: str | None, held_out: Path | None) -> dict:
    """``run_text_eval`` over the served store: free decoding beside the facts' phrases, or with
    ``adapter`` the base model's facts' phrases beside the adapter's (served as LoRA);
    ``held_out``: only the held-out picks of that text-data folder."""
    from agent.evaluation.text_eval import WAYS, run_text_eval

    ways = ("facts' phrases", "adapter") if adapter else WAYS
    with ExitStack() as stack:
        agent, engine = _served_agent(settings, stack, adapter)
        return run_text_eval(
            agent, engine, answers, seed=seed, ways=ways, adapter=adapter, picks=_held_out_picks(held_out)
        )


def _eval_texts(args: argparse.Namespace, settings) -> int:
    """``--stage texts``: the ways of writing texts on the same picks (``agent.evaluation.text_eval``),
    over the store ``muse serve`` answers from, through vLLM (``MUSE_LLM_URL``, or one started);
    ``--adapter``: the base model's facts' phrases beside the adapter's; ``--held-out``: only the
    held-out picks of a text-data folder."""
    if args.data is not None:
        raise ValueError("--stage texts reads the store muse serve answers from (MUSE_DATA_DIR); give no --data")
    report = _text_eval(settings, args.answers, args.seed, args.adapter, args.held_out)
    report.pop("informativeness")
    if _report_out(args, report):
        return 0
    print(f"{report['answers']} answers of {report['k']} picks, seed {report['seed']}")
    for way, r in report["ways"].items():
        print(
            f"{way}: {r['written_whole']} of {r['texts']} texts written whole, unsupported words "
            f"{r['unsupported_word_rate']}, texts with any {r['texts_with_unsupported_share']}, "
            f"{r['content_words_per_text']} content words a text; refused {r['refused'] or 'none'}; "
            f"shown {r['shown']}; informativeness {r['informativeness']}; engine {r['engine_s']} s"
        )
    for row in report["samples"][:10]:
        print(f"- {row['pick']} ({row['kind']})")
        for way in (*report["ways"], "template"):
            print(f"    {way}: {row[way]}")
    return 0


def _chat_eval_engines(args: argparse.Namespace, settings, stack: ExitStack) -> tuple:
    """``--stage chat``'s engines: the reranker's (``--rerank-adapter``: in-process, the base model
    and the adapter side by side; ``--rerank``: ``--engine``) and the LLM reader's (``--engine
    vllm``: a vLLM server serving the reader's adapter, so its JSON is decoded under the schema
    by vLLM's structured outputs; else in-process, validated after the fact)."""
    engine = reader_engine = None
    if args.rerank_adapter or args.llm_reader or args.reader_adapter:
        from agent.llm.model_files import model_path
        from agent.llm.transformers_engine import TransformersEngine
    if args.rerank_adapter:
        engine = TransformersEngine(model_path(settings), {"chat-rank": args.rerank_adapter}, settings.llm_dtype)
    elif args.rerank:
        from agent.llm.session import open_engine

        engine = stack.enter_context(open_engine(settings, engine=args.engine))
    if args.llm_reader or args.reader_adapter:
        adapters = {"reader": Path(args.reader_adapter)} if args.reader_adapter else {}
        if args.engine == "vllm":
            from agent.llm.session import open_engine

            reader_engine = stack.enter_context(open_engine(settings, engine="vllm", adapters=adapters))
        else:
            reader_engine = TransformersEngine(model_path(settings), adapters, dtype=settings.llm_dtype)
    return engine, reader_engine


def _eval_chat(args: argparse.Namespace, settings) -> int:
    from agent.evaluation.chat_eval import run_chat_eval

    data = None if str(args.data) == "demo" else args.data
    with ExitStack() as stack:
        engine, reader_engine = _chat_eval_engines(args, settings, stack)
        report = run_chat_eval(
            data,
            settings.data_dir / "eval",
            args.seed,
            args.conversations,
            args.mdd,
            args.limit,
            settings.chroma_url,
            engine,
            reader_engine,
            "reader" if args.reader_adapter else None,
            "chat-rank" if args.rerank_adapter else None,
            registry.fusion_weight_of(args.rerank_adapter) if args.rerank_adapter else None,
        )
    if args.json:
        print(json.dumps(report))
        return 0
    llm = report.get("reading_llm")
    if llm:
        print(f"LLM reader groups chosen on the generated dev set: {', '.join(llm['chosen_groups']) or 'none'}")
    for name, r in report["reading"].items():
        print(f"reading, {name} conversations (n={r['n']}; all fields right {r['all_right']:.3f}):")
        if llm:
            a, c = llm[name]["llm"], llm[name]["combined"]
            print(
                f"  {'field':<26} rules  llm    combined  ({llm[name]['invalid_replies']} invalid replies, "
                f"{llm[name]['seconds_per_turn']:.2f} s per turn; all right: llm {a['all_right']:.3f}, "
                f"combined {c['all_right']:.3f})"
            )
        for field, f in r["fields"].items():
            line = f"  {field:<26} {f['accuracy']:.3f}"
            if llm:
                for other in (llm[name]["llm"], llm[name]["combined"]):
                    g = other["fields"].get(field)
                    line += f"  {g['accuracy']:.3f}" if g else "  -    "
            print(f"{line}  (n={f['n']})")
    if "mdd" in report:
        m = report["mdd"]
        print(
            f"MDD task 2 dev: {m['n']} of {m['mapped']} mapped requests ({m['requests']} in all), seed "
            f"{m['seed']}; reader linking precision {m['linking']['precision']:.3f}, "
            f"recall {m['linking']['recall']:.3f}"
        )
        _recall_table(m["rows"])
        d = m["muse_minus_perfect_R@10"]
        print(f"muse - perfect linking, R@10: {d['mean']:+.4f} (95% CI {d['ci'][0]:+.4f}, {d['ci'][1]:+.4f})")
        print(f"catalog: {m['facts']}")
        if m.get("task3"):
            t = m["task3"]
            print(
                f'MDD task 3 dev, turn 3 ("I prefer <person> movies"): {t["n"]} of {t["dialogues"]} mapped '
                f"dialogues; the person credited in the catalog {t['person_in_catalog']}, read {t['person_read']}"
            )
            _recall_table(t["rows"])
        for key in ("rerank", "rerank_tuned"):
            rr = m.get(key)
            if not rr:
                continue
            r = rr["reported"]
            print(
                f"LLM reranker ({rr['adapter'] or 'base model'}) on Muse's 20: weight {rr['chosen_weight']} from "
                f"{rr['weight_from']}; reported on {r['requests']} requests ({r['valid']} with the film among the 20)"
            )
            for name in ("retrieval", "fused"):
                print(f"  {name:<10} R@1 {r[name]['R@1']:.4f}  R@10 {r[name]['R@10']:.4f}  N@10 {r[name]['N@10']:.4f}")
            for name in ("N@10", "R@10"):
                g = r[f"gain_{name}"]
                print(f"  paired {name} gain on those {r['valid']}: {g[0]:+.4f} (95% CI {g[1]:+.4f}, {g[2]:+.4f})")
    return 0


def _recall_table(rows: dict) -> None:
    """Rows of R@1/10/20, each with its 95% interval."""
    print(f"{'':<30}" + "".join(f"{'R@' + str(k):>22}" for k in (1, 10, 20)))
    for name, row in rows.items():
        cells = "".join(
            f"{row[f'R@{k}']:>8.4f} [{row[f'R@{k}_ci'][0]:.3f}, {row[f'R@{k}_ci'][1]:.3f}]" for k in (1, 10, 20)
        )
        print(f"{name:<30}{cells}")


def _report_out(args: argparse.Namespace, report: dict) -> bool:
    """``--report DIR`` written; under ``--json`` the report printed as JSON and True (the
    caller prints its table otherwise)."""
    _write_report(args, report)
    if args.json:
        print(json.dumps(report))
    return args.json


def _write_report(args: argparse.Namespace, result: dict) -> None:
    """``--report DIR``: the HTML report of this run (``agent.evaluation.report``)."""
    if args.report is None:
        return
    from agent.evaluation.report import write_eval_report

    say(f"report: {write_eval_report(result, args.report)}")


def _table(rows) -> None:
    from retrieval.metrics import METRIC_KEYS

    print(f"{'model':<22}" + "".join(f"{k:>8}" for k in METRIC_KEYS))
    for name, m in rows:
        print(f"{name:<22}" + "".join(f"{m[k]:>8.4f}" for k in METRIC_KEYS))


def _eval_rerank(args: argparse.Namespace, settings) -> int:
    from agent.evaluation.rerank_eval import run_rerank_eval
    from agent.llm.session import open_engine
    from agent.pipeline.ranker import prompt_config_of

    adapter = registry.ranker_adapter(settings)
    prompt = prompt_config_of(registry.adapters(settings).get(adapter) if adapter else None)
    if args.record_weight and adapter is None:
        raise ValueError("--record-weight needs a ranker adapter (MUSE_RANK_ADAPTER or a registered rank-*)")
    with open_engine(settings, engine=args.engine, with_adapters=True) as engine:
        report = run_rerank_eval(
            args.data,
            settings.data_dir / "eval",
            engine,
            adapter,
            args.split,
            args.seed,
            settings.chroma_url,
            prompt,
        )
    if args.record_weight:
        from agent.evaluation.rerank_eval import record_weight

        record_weight(
            registry.adapters(settings)[adapter], report["fusion_weight"], report["fusion_weight_validation"]
        )
        say(
            f"recorded fusion_weight {report['fusion_weight']} in {registry.adapters(settings)[adapter]}/manifest.json"
        )
    if _report_out(args, report):
        return 0
    print(f"adapter {report['adapter'] or '(base model)'}, fusion weight {report['fusion_weight']}")
    for split, block in report["splits"].items():
        print(
            f"\n{split}: all {report['users']} users, then the {block['valid_users']} whose item is "
            "among the candidates"
        )
        _table([(f"{name}", r["all_users"]) for name, r in block["rows"].items()])
        _table([(f"{name} (valid)", r["valid_subset"]) for name, r in block["rows"].items()])
    return 0


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def cmd_llm_serve(args: argparse.Namespace) -> int:
    import signal
    import time

    from agent.llm.server import ServerConfig, VLLMServer

    settings = _settings()
    # With a text adapter, the served checkpoint is it merged into the base model: LoRA adapters,
    # trained on the base model itself, do not ride on that (agent.llm.session does the same).
    adapters = {} if registry.text_adapter(settings) else registry.adapters(settings)
    config = ServerConfig(
        registry.text_checkpoint(settings),
        adapters,
        host=args.host,
        port=args.port or settings.llm_port,
        dtype=resolve_dtype(settings.llm_dtype),
        threads=settings.llm_threads,
        log_file=settings.data_dir / "vllm.log",
        extra_args=args.vllm_args[1:] if args.vllm_args[:1] == ["--"] else args.vllm_args,
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    say(f"starting vLLM: {' '.join(config.command())}")
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops vLLM as cleanly as Ctrl-C does
    with VLLMServer(config):
        say(f"ready on {config.url}: models base, {', '.join(adapters) or '(no adapters)'}; Ctrl-C stops it")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            say("stopping vLLM")
    return 0


def cmd_bench_rank(args: argparse.Namespace) -> int:
    from agent.bench.rank import run_rank_bench

    report = run_rank_bench(_settings(), n=args.requests, levels=args.concurrency)
    print(json.dumps(report))
    return 0


def cmd_bench_agent(args: argparse.Namespace) -> int:
    from agent.bench.agent import run_agent_bench

    report = run_agent_bench(
        _settings(), args.url, n=args.requests, k=args.k, concurrency=args.concurrency, seed=args.seed
    )
    print(json.dumps(report))
    return 0


def cmd_bench_retrieval(args: argparse.Namespace) -> int:
    from agent.bench.retrieval import run_retrieval_bench

    report = run_retrieval_bench(
        args.items,
        dim=args.dim,
        queries=args.queries,
        concurrency=args.concurrency,
        k=args.k,
        seed=args.seed,
        url=args.url,
        work_dir=args.work_dir,
        pid=args.pid,
    )
    print(json.dumps(report))
    return 0


def cmd_bench_soak(args: argparse.Namespace) -> int:
    from agent.bench.soak import run_soak

    print(
        json.dumps(
            run_soak(
                _settings(),
                args.url,
                args.pid,
                minutes=args.minutes,
                concurrency=args.concurrency,
                seed=args.seed,
                warmup_s=args.warmup,
            )
        )
    )
    return 0


def cmd_finetune_build_data(args: argparse.Namespace) -> int:
    from agent.store import open_store
    from finetune.feedback_data import BuildConfig, build_data

    settings = _settings()
    config = BuildConfig(cutoff=args.cutoff, eval_fraction=args.eval_fraction, min_history=args.min_history)
    report = build_data(open_store(settings.store_url), args.out, config)
    say(f"wrote {', '.join(f'{n}: {c}' for n, c in report['files'].items())} to {args.out}")
    print(json.dumps(report))
    return 0


def cmd_finetune_train(args: argparse.Namespace) -> int:
    from finetune.feedback_train import config_from_args, train

    job, cfg = config_from_args(list(args.options), _settings())
    folder = train(job, cfg)
    print(json.dumps({"adapter": job.name, "path": str(folder)}))
    return 0


def cmd_finetune_promote(args: argparse.Namespace) -> int:
    from finetune.promote import promote

    result = promote(_settings(), args.candidate, args.feedback, args.data, args.work_dir, args.url, args.split)
    say(("promoted: " if result["promoted"] else "refused: ") + result["reason"])
    print(json.dumps(result))
    return 0 if result["promoted"] else 1


def cmd_finetune_text_data(args: argparse.Namespace) -> int:
    from finetune.text_data import TextDataConfig, bootstrap

    cfg = TextDataConfig(args.out, args.answers, args.k, args.samples, args.temperature, args.eval_share, args.seed)
    with ExitStack() as stack:
        agent, engine = _served_agent(_settings(), stack)
        report = bootstrap(agent, engine, cfg)
    say(f"wrote {', '.join(f'{n}: {c}' for n, c in report['files'].items())} to {args.out} in {report['seconds']} s")
    print(json.dumps({k: v for k, v in report.items() if k != "held_out_items"}))
    return 0


def cmd_finetune_promote_text(args: argparse.Namespace) -> int:
    from finetune.promote_text import judge, record

    settings = _settings()
    report = _text_eval(settings, args.answers, args.seed, args.candidate, args.data)
    verdict = judge(report)
    record(settings.adapters_dir, args.candidate, verdict)
    say(("promoted: " if verdict["promoted"] else "refused: ") + verdict["reason"])
    print(json.dumps(verdict))
    if args.samples:
        Path(args.samples).write_text(json.dumps(report["samples"], indent=1))
    return 0 if verdict["promoted"] else 1


def cmd_loop_simulate(args: argparse.Namespace) -> int:
    from transformers import HfArgumentParser

    from finetune.feedback_train import FeedbackTrainConfig
    from finetune.loop import ROUND_TRAINING, LoopConfig, simulate

    settings = _settings()
    start = (
        registry.ranker_adapter(settings) if args.start == "current" else None if args.start == "none" else args.start
    )
    if start and "/" not in start:  # a registered name
        start = str(settings.adapters_dir / start)
    # Each round's training takes `muse finetune train`'s options (--method, --learning_rate, ...).
    training_options = HfArgumentParser(FeedbackTrainConfig)
    training_options.set_defaults(**ROUND_TRAINING, dtype=settings.llm_dtype)
    (training,) = training_options.parse_args_into_dataclasses(list(args.options))
    cfg = LoopConfig(
        data=args.data,
        work_dir=args.work_dir or settings.data_dir / "loop",
        rounds=args.rounds,
        start=start,
        model_dir=settings.llm_model,
        users=args.users,
        shown=args.shown,
        unseen=args.unseen,
        seed=args.seed,
        training=training,
    )
    result = simulate(cfg)
    if args.json:
        print(json.dumps(result))
    else:
        for r in result["rounds"]:
            print(
                f"round {r['round']} ({r['adapter'] or 'base model'}): validation N@10 "
                f"{r['validation']['metrics']['N@10']:.4f}, test N@10 {r['test']['metrics']['N@10']:.4f}"
            )
    return 0


def cmd_finetune_ab_report(args: argparse.Namespace) -> int:
    from agent.pipeline.ab import ab_report
    from agent.store import open_store

    store = open_store(_settings().store_url)
    arms = ab_report(store.impressions(), store.events())
    if args.report is not None:
        from agent.evaluation.report import write_ab_report

        say(f"report: {write_ab_report(arms, args.report)}")
    print(json.dumps(arms))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    for path in (DEMO_DIR / "demo_items.jsonl", DEMO_DIR / "demo_interactions.jsonl"):
        cmd_ingest(argparse.Namespace(path=path))
    cmd_index(args)
    for user in ("demo-user-01", "demo-user-07"):
        cmd_recommend(
            argparse.Namespace(
                user=user,
                k=5,
                query=None,
                category=None,
                year_min=None,
                year_max=None,
                exclude=None,
                json=False,
                url=None,
            )
        )
    return 0


def cmd_setup_model(args: argparse.Namespace) -> int:
    from agent.llm.model_files import ensure_checkpoint

    print(ensure_checkpoint(args.cache))
    return 0


def _add_data_commands(sub) -> None:
    """Ingest, index, recommend, serve, chat, eval, llm serve, demo, setup-model: running Muse."""
    p = sub.add_parser("ingest", help="load items and interactions into the event store")
    p.add_argument("path", type=Path, help="dataset folder, items.{jsonl,csv} or interactions file")
    p.add_argument(
        "--facts",
        type=Path,
        help="a knowledge base of film facts (MDD movie_kb.txt) joined to the items by title and year: "
        "director, writer, cast and language become metadata the chat can constrain",
    )
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("index", help="fit retrieval models and upsert the Chroma index")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("recommend", help="retrieve candidates for a user")
    p.add_argument("--user", required=True)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--query", help="free text blended with the user's history")
    p.add_argument("--category", action="append", help="keep items in any of these categories")
    p.add_argument("--year-min", type=int)
    p.add_argument("--year-max", type=int)
    p.add_argument("--exclude", action="append", help="item id never to return")
    p.add_argument(
        "--url",
        help="ask a running Muse service (e.g. http://127.0.0.1:8000): ranked and "
        "explained; default: the retrieval stage in-process",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_recommend)

    p = sub.add_parser("serve", help="the HTTP service: chat, recommendations, feedback")
    p.add_argument("--demo", action="store_true", help="load the shipped demo catalog when the store is empty")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("chat", help="chat in the terminal")
    p.add_argument("--user", required=True)
    p.add_argument("--url", default=None, help="Muse service URL; default: start one in-process")
    p.add_argument("--k", type=int, default=5)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("eval", help="LlamaRec protocol evaluation; --stage chat: the conversation reader")
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="dataset folder (e.g. ml-latest-small); with --stage chat also `demo`, the shipped catalog; "
        "not with --stage texts (the served store)",
    )
    p.add_argument(
        "--stage",
        choices=("retrieval", "rerank", "chat", "texts"),
        default="retrieval",
        help="texts: each way of writing a pick's texts on the same picks of the served store (MUSE_DATA_DIR), "
        "with the support measure of the model's words",
    )
    p.add_argument("--answers", type=int, default=20, help="--stage texts: answers planned")
    p.add_argument("--adapter", default=None, help="--stage texts: a text adapter beside the base model")
    p.add_argument(
        "--held-out", type=Path, default=None, help="--stage texts: only the held-out picks of this text-data folder"
    )
    p.add_argument(
        "--mdd",
        type=Path,
        default=None,
        help="--stage chat: the Movie Dialog Dataset folder (task2_recs_dev.txt, movie_kb.txt); adds "
        "Recall@1/10/20 on its requests beside popularity and perfect linking",
    )
    p.add_argument(
        "--conversations",
        type=Path,
        default=None,
        help="--stage chat: a conversations file (default: the demo's, or generated from --data)",
    )
    p.add_argument("--limit", type=int, default=1000, help="--stage chat: MDD requests sampled (0: all)")
    p.add_argument(
        "--rerank",
        action="store_true",
        help="--stage chat with --mdd: also score Muse's candidates with the conversation-aware LLM "
        "reranker (the base model, --engine) and report the fusion weight validation chooses",
    )
    p.add_argument(
        "--llm-reader",
        action="store_true",
        help="--stage chat: also read the conversations with the LLM reader (in-process engine, or vLLM with "
        "structured outputs under --engine vllm; the base model unless --reader-adapter), rules and LLM side by "
        "side per field",
    )
    p.add_argument(
        "--reader-adapter",
        type=Path,
        default=None,
        help="--stage chat: the LLM reader's LoRA adapter (finetune/reader_sft.py's output_dir/adapter)",
    )
    p.add_argument(
        "--rerank-adapter",
        type=Path,
        default=None,
        help="--stage chat with --mdd: the conversation reranker's LoRA adapter (finetune/chat_rank_sft.py's "
        "output_dir/adapter), scored beside the base model in-process (transformers)",
    )
    p.add_argument("--split", choices=("test", "validation"), default="test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--engine",
        choices=("vllm", "transformers"),
        default=None,
        help="LLM engine for --stage rerank and --stage chat --rerank (default: MUSE_LLM_ENGINE, i.e. vllm); "
        "with --llm-reader/--reader-adapter, vllm reads under the JSON schema (default there: in-process)",
    )
    p.add_argument(
        "--record-weight",
        action="store_true",
        help="--stage rerank: write the fusion weight validated on the validation split into the "
        "adapter's manifest (serving uses it; 0 = no ranking call)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--report", type=Path, default=None, help="folder for a self-contained HTML report with plots (index.html)"
    )
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("llm", help="the LLM server")
    llm = p.add_subparsers(dest="llm_command", required=True)
    p = llm.add_parser("serve", help="run vLLM with the base model and every registered adapter")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default: MUSE_LLM_PORT (8100)")
    p.add_argument("vllm_args", nargs=argparse.REMAINDER, help="extra vLLM flags after --")
    p.set_defaults(func=cmd_llm_serve)

    p = sub.add_parser("demo", help="ingest + index the shipped demo catalog, show recommendations")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("setup-model", help="convert the packaged LLM into a cached HF checkpoint")
    p.add_argument("--cache", type=Path, default=None, help="cache folder (default ~/.cache/muse)")
    p.set_defaults(func=cmd_setup_model)


def _add_bench_commands(sub) -> None:
    """Muse bench rank|agent|retrieval|soak."""
    p = sub.add_parser("bench", help="benchmarks that print figures")
    bench = p.add_subparsers(dest="bench_command", required=True)
    p = bench.add_parser("rank", help="ranking latency and throughput, vLLM vs transformers")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    p.set_defaults(func=cmd_bench_rank)
    p = bench.add_parser("agent", help="N requests to a running service, every answer checked")
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--requests", type=int, default=100)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_bench_agent)
    p = bench.add_parser("retrieval", help="a synthetic catalog of N items in a Chroma server: build, p95, recall")
    p.add_argument("--items", type=int, required=True, help="catalog size, e.g. 1000000")
    p.add_argument("--dim", type=int, default=2560, help="vector width (2560: Muse's hybrid vectors at full rank)")
    p.add_argument("--queries", type=int, default=200, help="queries per concurrency level")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    p.add_argument("--k", type=int, default=100, help="top k asked for, and the k of recall@k")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--url", default=None, help="a running Chroma server; unset = one started in --work-dir")
    p.add_argument("--work-dir", type=Path, default=None, help="the started server's store (kept); unset = temporary")
    p.add_argument("--pid", type=int, default=None, help="with --url: the server's process, for its memory")
    p.set_defaults(func=cmd_bench_retrieval)
    p = bench.add_parser("soak", help="steady load for minutes: errors, p95, resident memory over time")
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--pid", type=int, default=None, help="the `muse serve` process: its tree's RSS is sampled")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--warmup", type=float, default=60.0, help="seconds before the memory baseline")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_bench_soak)


def _add_finetune_commands(sub) -> None:
    """Muse finetune build-data|train|promote|ab-report."""
    p = sub.add_parser("finetune", help="feedback -> training data -> adapters")
    ft = p.add_subparsers(dest="finetune_command", required=True)
    p = ft.add_parser("build-data", help="SFT/DPO/KTO JSONL from logged impressions and feedback")
    p.add_argument("--out", type=Path, required=True, help="folder for {sft,dpo,kto}_{train,eval}.jsonl")
    p.add_argument("--cutoff", type=float, default=None, help="epoch seconds: impressions from then on evaluate")
    p.add_argument("--eval-fraction", type=float, default=0.2, help="newest share held out when no --cutoff")
    p.add_argument("--min-history", type=int, default=3, help="liked items a user needs before an impression")
    p.set_defaults(func=cmd_finetune_build_data)
    p = ft.add_parser(
        "train",
        help="a new ranker adapter from build-data files (sft, dpo or kto)",
        add_help=False,
        description="options: see `python -m finetune.feedback_train --help`",
    )
    p.set_defaults(func=cmd_finetune_train)
    p = ft.add_parser("promote", help="candidate vs serving adapter offline; promote and hot-load only if better")
    p.add_argument("--candidate", required=True, help="a registered adapter")
    p.add_argument("--feedback", type=Path, default=None, help="build-data folder: judge on its sft_eval.jsonl")
    p.add_argument("--data", type=Path, default=None, help="dataset folder: judge on the protocol's validation users")
    p.add_argument("--work-dir", type=Path, default=None, help="cache of the protocol's candidates")
    p.add_argument("--url", default=None, help="a running Muse service: switch it to the candidate at once")
    p.add_argument("--split", action="store_true", help="with --url: A/B split users between old and new")
    p.set_defaults(func=cmd_finetune_promote)
    p = ft.add_parser(
        "text-data", help="text adapter data: the model's sampled texts that pass the checks, most informative kept"
    )
    p.add_argument("--out", type=Path, required=True, help="folder for text_sft_{train,eval}.jsonl")
    p.add_argument("--answers", type=int, default=150, help="answers planned for seeded users of the served store")
    p.add_argument("--k", type=int, default=5, help="picks per answer")
    p.add_argument("--samples", type=int, default=4, help="sampled candidates per text, besides the greedy one")
    p.add_argument("--temperature", type=float, default=0.9, help="sampling temperature")
    p.add_argument("--eval-share", type=float, default=0.2, help="share of picks held out (by id hash)")
    p.add_argument("--seed", type=int, default=0, help="seed of users and sampling")
    p.set_defaults(func=cmd_finetune_text_data)
    p = ft.add_parser("promote-text", help="text adapter vs base model on held-out picks; promote only if better")
    p.add_argument("--candidate", required=True, help="a registered text adapter")
    p.add_argument("--data", type=Path, required=True, help="its text-data folder (the held-out picks)")
    p.add_argument("--answers", type=int, default=100, help="answers planned")
    p.add_argument("--seed", type=int, default=1, help="seed of the users drawn (not text-data's)")
    p.add_argument("--samples", type=Path, default=None, help="write each text of both ways here (JSON)")
    p.set_defaults(func=cmd_finetune_promote_text)
    p = ft.add_parser("ab-report", help="engagement per ranker adapter (A/B arm) from the event store")
    p.add_argument("--report", type=Path, default=None, help="folder for an HTML report with a plot (index.html)")
    p.set_defaults(func=cmd_finetune_ab_report)


def _add_loop_commands(sub) -> None:
    """Muse loop simulate."""
    p = sub.add_parser("loop", help="the feedback loop, measured")
    loop = p.add_subparsers(dest="loop_command", required=True)
    p = loop.add_parser(
        "simulate",
        help="replay dataset users through recommend -> feedback -> train -> eval",
        description="each round's training also takes `muse finetune train`'s options (--method, --learning_rate, "
        "--max_steps, ...; see `python -m finetune.feedback_train --help`); defaults: sft, learning rate 5e-4",
    )
    p.add_argument("--data", type=Path, required=True, help="dataset folder (e.g. ml-latest-small)")
    p.add_argument("--rounds", type=int, default=2, help="feedback rounds after round 0")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--work-dir", type=Path, default=None, help="default MUSE_DATA_DIR/loop; a rerun resumes")
    p.add_argument("--start", default="current", help="adapter to start from: 'current', 'none', a name or a folder")
    p.add_argument("--users", type=int, default=0, help="simulate this many users (0: all)")
    p.add_argument("--shown", type=int, default=10, help="items shown per impression")
    p.add_argument("--unseen", type=int, default=16, help="last training items the serving retriever never saw")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_loop_simulate)


def _add_keys_commands(sub) -> None:
    """Muse keys create|list|revoke."""
    p = sub.add_parser("keys", help="API keys for MUSE_AUTH=keys (stored hashed)")
    keys = p.add_subparsers(dest="keys_command", required=True)
    p = keys.add_parser("create", help="make a key; it is printed once")
    p.add_argument(
        "--scope",
        required=True,
        choices=["admin", "client"],
        help="admin: everything; client: recommendations, chat, feedback, history of --user",
    )
    p.add_argument("--user", action="append", help="a user a client key may act for (repeat for several)")
    p.add_argument("--rate", default="120/minute", help="rate limit, e.g. 120/minute or 5/second")
    p.add_argument("--name", default="", help="a note: who or what holds the key")
    p.set_defaults(func=cmd_keys_create)
    p = keys.add_parser("list", help="every key (id, scope, users, rate, revoked); never the key itself")
    p.set_defaults(func=cmd_keys_list)
    p = keys.add_parser("revoke", help="refuse a key from now on")
    p.add_argument("key_id", help="the id `muse keys list` shows (the part after 'muse_')")
    p.set_defaults(func=cmd_keys_revoke)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="muse", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    _add_data_commands(sub)
    _add_bench_commands(sub)
    _add_finetune_commands(sub)
    _add_loop_commands(sub)
    _add_keys_commands(sub)
    return parser


class _Stderr(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is at the time (pytest swaps it per test)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def log_to_stderr() -> None:
    """Muse's own loggers (agent, finetune, retrieval) print INFO and above to stderr, plainly;
    other libraries keep their own levels. Idempotent."""
    for name in ("agent", "finetune", "retrieval"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        if not any(h.get_name() == "muse-stderr" for h in logger.handlers):
            handler = _Stderr()
            handler.set_name("muse-stderr")
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)


def main(argv: list[str] | None = None) -> int:
    log_to_stderr()
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if getattr(args, "func", None) in (cmd_finetune_train, cmd_loop_simulate):  # options of FeedbackTrainConfig
        args.options = unknown
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    from agent.catalog import IngestError
    from agent.llm.engine import EngineError
    from agent.store import UnknownItemError

    try:
        return args.func(args)
    except (IngestError, UnknownItemError, EngineError, ValueError) as e:
        say(f"muse {args.command}: error: {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())

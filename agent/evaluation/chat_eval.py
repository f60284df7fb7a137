"""`muse eval --stage chat`: how well the chat reads conversations, and what the reading buys.

1. **Reading** (``read_accuracy``): each development conversation (``agent.evaluation.
   conversations``) goes through the service's own path (``chat.read_turns`` ->
   ``chat.build_ask`` -> ``ConversationReader``), and each field of the reading is compared
   with the conversation's expected state:

   - ``named``: the set of films named (catalog ids); ``named+sentiment``: the same, each with
     the right sentiment; ``references``: the earlier picks pointed at (liked, excluded);
   - ``constraints``: right when the read constraints admit exactly the catalog items the expected
     ones admit (so "under 90 minutes" read as at most 89 or below 90 are both right); also per
     part: ``categories``, ``years``, and each metadata field;
   - ``count``, ``unclear`` (a greeting), ``unsupported`` (something asked cannot be honoured).

   A field is scored on the conversations where it is expected or was read (an empty field read
   as empty is not counted as a success), so the share is not inflated by conversations that
   never touch it.

2. **MDD** (``mdd_recall``): the Movie Dialog Dataset's task-2 development requests
   (``agent.evaluation.mdd``), whose recommended film maps to the catalog. Recall@1/10/20 of the
   film the dataset recommends among the picks of: Muse (the request read by the chat's reader,
   planned by ``MuseAgent.plan`` as a new user, the LLM out of the loop as at ``make run``, whose
   shipped ranker has fusion weight 0); "perfect linking + retrieval" (the same plan seeded with the
   films the request names, read from the dataset's templates); and popularity (the most-watched
   films the request does not name). Each with a 95% Wilson interval; Muse minus perfect linking
   with a paired 95% interval.
"""

from __future__ import annotations

import logging
import random
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.catalog import Item
from agent.evaluation.conversations import Conversation
from agent.evaluation.report import paired_gain
from agent.evaluation.report import wilson_interval as wilson
from agent.knowledge import join_facts, load_facts
from agent.pipeline.chat import build_ask, read_turns
from agent.pipeline.people import fold as people_fold
from agent.pipeline.reader import Constraints, ConversationReader, RequestState, Vocabulary

logger = logging.getLogger(__name__)

KS = (1, 10, 20)
EXAMPLES = 5  # misreadings kept per field


def _admitted(c: Constraints, items: Sequence[Item]) -> frozenset[str]:
    return frozenset(it.id for it in items if c.admits(it))


def _parts(c: Constraints) -> dict[str, Constraints]:
    """``c`` split by what it constrains: categories, years, each metadata field."""
    out = {
        "categories": Constraints(categories=list(c.categories), excluded_categories=list(c.excluded_categories)),
        "years": Constraints(year_min=c.year_min, year_max=c.year_max),
    }
    for name in set(c.values) | set(c.excluded_values) | set(c.ranges):
        out[name] = Constraints(
            values={name: c.values[name]} if name in c.values else {},
            excluded_values={name: c.excluded_values[name]} if name in c.excluded_values else {},
            ranges={name: c.ranges[name]} if name in c.ranges else {},
        )
    return out


def score_reading(conv: Conversation, state: RequestState, items: Sequence[Item]) -> dict[str, bool]:
    """Field -> whether ``state`` read it right, for each field ``conv`` expects or ``state``
    holds (module docstring). ``items``: the catalog, for comparing constraints."""
    e = conv.expected
    out: dict[str, bool] = {}
    got = {m.item_id: m.sentiment for m in state.mentions}
    want = e["mentions"]
    if got or want:
        out["named"] = set(got) == set(want)
    if want:
        out["named+sentiment"] = got == want
    pointed = (sorted(state.pointed_like), sorted(state.pointed_exclude))
    if any(pointed) or e["pointed_like"] or e["pointed_exclude"]:
        out["references"] = pointed == (sorted(e["pointed_like"]), sorted(e["pointed_exclude"]))
    read, expected = state.constraints, conv.constraints()
    if not read.empty() or not expected.empty():
        out["constraints"] = _admitted(read, items) == _admitted(expected, items)
        mine, theirs = _parts(read), _parts(expected)
        for name in set(mine) | set(theirs):
            a, b = mine.get(name, Constraints()), theirs.get(name, Constraints())
            if not a.empty() or not b.empty():
                out[f"constraints.{name}"] = _admitted(a, items) == _admitted(b, items)
    soft, wanted = state.preferences, conv.constraints("preferences")
    if not soft.empty() or not wanted.empty():
        out["preferences"] = _admitted(soft, items) == _admitted(wanted, items)
    if state.count is not None or e["count"] is not None:
        out["count"] = state.count == e["count"]
    if state.unclear or e["unclear"]:
        out["unclear"] = state.unclear == e["unclear"]
    if state.unsupported or e["unsupported"]:
        out["unsupported"] = bool(state.unsupported) == bool(e["unsupported"])
    return out


def read_accuracy(
    conversations: Sequence[Conversation],
    items: Sequence[Item],
    popularity: Sequence[str] = (),
    readings: dict | None = None,
    groups: Sequence[str] = (),
) -> dict:
    """Field-level accuracy of the reader on ``conversations`` over the catalog ``items``: the
    rules, or with ``readings`` (turn text -> the LLM's ``_Turn``, ``llm_readings``) the rules with
    ``groups`` of fields taken from the LLM (``reader.merge_turn``).
    ``{"n", "fields": {field: {"n", "correct", "accuracy"}}, "all_right", "kinds", "examples"}``
    (``examples``: up to ``EXAMPLES`` misreadings per field, with the text and both readings)."""
    by_id = {it.id: it for it in items}
    reader = ConversationReader(Vocabulary(items, popularity), lambda ids: [by_id[i] for i in ids if i in by_id])
    counts: dict[str, list[int]] = {}
    kinds: dict[str, list[int]] = {}
    examples: dict[str, list] = {}
    all_right = 0
    for conv in conversations:
        _, _, state = build_ask(read_turns(conv.messages), "muse-eval", 5, reader, readings=readings, groups=groups)
        scored = score_reading(conv, state, items)
        all_right += all(scored.values())
        k = kinds.setdefault(conv.kind, [0, 0])
        k[0], k[1] = k[0] + all(scored.values()), k[1] + 1
        for name, right in scored.items():
            c = counts.setdefault(name, [0, 0])
            c[0], c[1] = c[0] + right, c[1] + 1
            if not right and len(examples.setdefault(name, [])) < EXAMPLES:
                examples[name].append(
                    {
                        "text": [m["content"] for m in conv.messages if m["role"] == "user"],
                        "expected": conv.expected,
                        "read": _reading(state),
                    }
                )
    return {
        "n": len(conversations),
        "fields": {
            name: {"n": n, "correct": ok, "accuracy": round(ok / n, 4)} for name, (ok, n) in sorted(counts.items())
        },
        "all_right": round(all_right / max(len(conversations), 1), 4),
        "kinds": {name: round(ok / n, 4) for name, (ok, n) in sorted(kinds.items())},
        "examples": examples,
    }


def llm_readings(
    conversations: Sequence[Conversation], items: Sequence[Item], engine, adapter: str | None, popularity=()
) -> tuple[dict, dict, float]:
    """The LLM reader's reading (``llm_reader.LLMReader``) of every user turn of
    ``conversations``, in one batch: ``(readings, errors, seconds per turn)``."""
    from agent.pipeline.llm_reader import LLMReader, TurnFormat

    texts = [q for conv in conversations for q in read_turns(conv.messages).queries]
    started = time.perf_counter()
    readings, errors = LLMReader(engine, TurnFormat(Vocabulary(items, popularity)), adapter).read(texts)
    return readings, errors, (time.perf_counter() - started) / max(len(set(texts)), 1)


# Each field group the LLM may read (``reader.READ_GROUPS``) and the scored fields that judge it.
GROUP_FIELDS = {
    "mentions": ("named", "named+sentiment"),
    "categories": ("constraints.categories",),
    "years": ("constraints.years",),
    "values": (),  # filled per catalog: constraints.<each text field>
    "ranges": (),  # constraints.<the runtime field>
    "count": ("count",),
    "greeting": ("unclear",),
}


def choose_groups(rules: dict, llm: dict, fmt) -> list[str]:
    """The groups whose fields the LLM reads right more often than the rules on one set of
    conversations (``read_accuracy`` reports of both): correct counts summed over the group's
    fields, ties to the rules. ``fmt``: the catalog's ``TurnFormat`` (its fields)."""
    fields = dict(GROUP_FIELDS)
    fields["values"] = tuple(f"constraints.{name}" for name in fmt.fields)
    fields["ranges"] = (f"constraints.{fmt.runtime}",) if fmt.runtime else ()

    def correct(report: dict, group: str) -> int:
        return sum(report["fields"].get(f, {}).get("correct", 0) for f in fields[group])

    return [g for g in fields if fields[g] and correct(llm, g) > correct(rules, g)]


def _reading(state: RequestState) -> dict:
    from agent.pipeline.reader import as_dict

    d = as_dict(state)
    return {k: v for k, v in d.items() if v not in (None, [], {}, False)}


# ------------------------------------------------------------------ MDD


def _fitted_model(data: Path, workdir: Path, seed: int, chroma_url: str | None):
    """The protocol's items, their Chroma index and the hybrid model refitted on everything but
    each user's last item (``retrieval_eval``'s test fit), cached in ``workdir`` by seed."""
    from agent.evaluation import retrieval_eval
    from retrieval.hybrid import HybridModel

    proto = retrieval_eval.prepare(data)
    index, _ = retrieval_eval.content_index(proto, workdir, chroma_url)
    folder = workdir / f"chat-model-seed{seed}"
    if (folder / "model.json").exists():
        return proto, index, HybridModel.load(folder)
    fitted = retrieval_eval.fit_for_validation(data, workdir, seed, chroma_url=chroma_url)
    retrieval_eval.refit_for_test(fitted, seed)
    fitted.model.save(folder)
    return proto, index, fitted.model


@dataclass
class MddSetup:
    """What every MDD measurement shares (``mdd_setup``): the protocol, two agents over the
    test-fit retriever (``agent``: the catalog with ``movie_kb.txt``'s facts joined; ``plain``:
    without), popularity order, the title mapping, and the mapped task-2 requests."""

    proto: object
    agent: object
    plain: object
    popular: list[str]
    titles: object
    years: dict[str, int]
    requests: list  # task-2 requests whose recommended film maps to the catalog
    total: int  # task-2 requests in the file
    joined: object  # join_facts' summary

    def close(self) -> None:
        self.agent.close()
        self.plain.close()


def mdd_setup(data: Path, mdd_dir: Path, workdir: Path, seed: int = 0, chroma_url: str | None = None) -> MddSetup:
    """Fit (or reuse, cached in ``workdir`` by seed) the retriever, build both agents in fresh
    SQLite stores under ``workdir`` and parse MDD task 2. Raises ``FileNotFoundError`` when
    ``mdd_dir`` lacks the task-2 file or ``movie_kb.txt``."""
    from agent.config import Settings
    from agent.evaluation import mdd
    from agent.pipeline.recommender import MuseAgent
    from agent.store.sql import SQLiteStore
    from retrieval.retriever import Retriever

    for name in (mdd.TASK2, mdd.KB):
        if not (mdd_dir / name).exists():
            raise FileNotFoundError(f"{mdd_dir / name} is missing (the MDD development files and movie_kb.txt)")
    proto, index, model = _fitted_model(data, workdir, seed, chroma_url)
    counts = Counter(i for seq in proto.loo.sequences.values() for i in seq)
    popular = [i for i, _ in counts.most_common()]
    retriever = Retriever(index, model, popular)
    retriever.write_hybrid(proto.items)
    with_facts, joined = join_facts(proto.items, load_facts(mdd_dir / mdd.KB))
    agents = {}
    for name, items in (("facts", with_facts), ("no facts", proto.items)):
        home = workdir / f"chat-eval-{name.replace(' ', '-')}"
        shutil.rmtree(home, ignore_errors=True)
        store = SQLiteStore(home / "muse.db")
        store.upsert_items(items)
        agents[name] = MuseAgent(Settings(data_dir=home), store, retriever, None)
    years = mdd.release_years(mdd_dir / mdd.KB)
    titles = mdd.CatalogTitles(proto.items, years)
    parsed = mdd.parse_task2(mdd_dir / mdd.TASK2, set(years))
    requests = [r for r in parsed if titles.ids(r.targets)]
    return MddSetup(proto, agents["facts"], agents["no facts"], popular, titles, years, requests, len(parsed), joined)


def mdd_sample(requests: Sequence, seed: int, limit: int) -> list:
    """The seeded random sample ``muse eval --stage chat --mdd`` scores (``limit`` 0: all). The
    conversation reranker's trainer leaves exactly these requests out."""
    return random.Random(seed).sample(list(requests), limit) if 0 < limit < len(requests) else list(requests)


def chat_plan(agent, text: str, k: int = 20):
    """One request through the chat's path as a new user (``read_turns`` -> ``build_ask`` ->
    ``MuseAgent.plan``), ``k`` candidates retrieved and all of them picked whatever count the
    request states: ``(plan, the reader's state)``. ``k`` above the served 20 looks deeper (a
    trainer's labels; a ranker adapter in use would refuse more than 20)."""
    ask, _, state = build_ask(read_turns([{"role": "user", "content": text}]), "mdd-eval", k, agent.reader)
    ask.k = ask.depth = k
    return agent.plan(ask), state


def chat_rank_request(agent, text: str, items, scores, state):
    """The conversation-aware ranking request for one planned chat turn: its words, the films the
    reader read as liked (the last ``PromptConfig.history_items``) and the candidates ``items``
    with their retrieval ``scores`` (a plan's, in its order; ``RankRequest.for_chat``)."""
    from agent.pipeline.ranker import PromptConfig, RankRequest

    liked = agent.store.get_items(state.ids("liked", "mentioned"))[-PromptConfig().history_items :]
    return RankRequest.for_chat(text, items, scores, liked)


def mdd_recall(
    data: Path,
    mdd_dir: Path,
    workdir: Path,
    seed: int = 0,
    limit: int = 1000,
    chroma_url: str | None = None,
    engine=None,
    rerank_adapter: str | None = None,
    rerank_weight: float | None = None,
) -> dict:
    """Recall@1/10/20 on MDD task-2 development requests mapped to ``data``'s catalog (module
    docstring): ``{"rows": {name: {"R@k": .., "R@k_ci": [lo, hi]}}, "n", "mapped", ...}``.
    ``limit``: a seeded random sample of that many mapped requests (0: all). ``engine``: an LLM
    engine; when given, the sample also goes through the conversation-aware LLM reranker
    (``rerank_probe``): the base model (``rerank``) and, when ``rerank_adapter`` names one of the
    engine's adapters, that LoRA adapter at ``rerank_weight`` (its manifest's validated fusion
    weight; ``rerank_tuned``).
    Raises ``FileNotFoundError`` when ``mdd_dir`` lacks the task-2 file or ``movie_kb.txt``."""
    from agent.evaluation import mdd
    from agent.pipeline.answer import Ask

    started = time.perf_counter()
    setup = mdd_setup(data, mdd_dir, workdir, seed, chroma_url)
    agent, plain, popular, titles = setup.agent, setup.plain, setup.popular, setup.titles
    years, requests, total = setup.years, setup.requests, setup.total
    sample = mdd_sample(requests, seed, limit)
    hits: dict[str, list[list[int]]] = {
        "popularity": [],
        "perfect linking + retrieval": [],
        "muse without facts": [],
        "muse": [],
    }
    linked = [0, 0, 0]  # true positives, read, gold
    plans = []  # (ranking request, the target ids, the candidate ids) for the reranker
    for r in sample:
        target = set(titles.ids(r.targets))
        gold = [i for i in titles.ids(r.named) if i not in target]
        ranked = {
            "popularity": [i for i in popular if i not in gold][:20],
            "perfect linking + retrieval": [
                it.id for it in agent.plan(Ask("mdd-eval", 20, like_ids=gold, said={g: "liked" for g in gold})).items
            ],
        }
        ranked["muse without facts"] = _chat_picks(plain, [r.text], [])
        plan, state = chat_plan(agent, r.text)
        ranked["muse"] = [it.id for it in plan.items]
        if engine is not None:
            plans.append((chat_rank_request(agent, r.text, plan.items, plan.scores, state), target, ranked["muse"]))
        read = set(state.ids("liked", "mentioned", "seen", "disliked"))
        linked = [linked[0] + len(read & set(gold)), linked[1] + len(read), linked[2] + len(gold)]
        for name, ids in ranked.items():
            hits[name].append([int(bool(target & set(ids[:k]))) for k in KS])
    people = (
        mdd_people_recall(agent, plain, popular, titles, mdd_dir, years, seed, limit)
        if (mdd_dir / mdd.TASK3).exists()
        else None
    )
    setup.close()
    tuned = engine is not None and rerank_adapter is not None
    muse, perfect = np.array(hits["muse"]), np.array(hits["perfect linking + retrieval"])
    mean, se = paired_gain(perfect[:, 1].tolist() if len(perfect) else [], muse[:, 1].tolist() if len(muse) else [])
    half = 1.96 * se
    return {
        "requests": total,
        "mapped": len(requests),
        "n": len(sample),
        "seed": seed,
        "rows": _recall_rows(hits),
        "facts": setup.joined.summary(),
        "task3": people,
        "muse_minus_perfect_R@10": {
            "mean": round(mean, 4),
            "ci": [round(mean - half, 4), round(mean + half, 4)] if len(muse) else [0, 0],
        },
        "linking": {
            "precision": round(linked[0] / max(linked[1], 1), 4),
            "recall": round(linked[0] / max(linked[2], 1), 4),
        },
        "rerank": rerank_probe(engine, plans) if engine is not None else None,
        "rerank_tuned": rerank_probe(engine, plans, rerank_adapter, rerank_weight) if tuned else None,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _recall_rows(hits: dict[str, list[list[int]]]) -> dict[str, dict]:
    """Per row: R@k for each of ``KS`` with its 95% Wilson interval, from 0/1 hits per request."""
    rows = {}
    for name, h in hits.items():
        a = np.array(h) if h else np.zeros((0, len(KS)))
        row = {}
        for j, k in enumerate(KS):
            row[f"R@{k}"] = round(float(a[:, j].mean()), 4) if len(a) else 0.0
            row[f"R@{k}_ci"] = [round(x, 4) for x in wilson(int(a[:, j].sum()), len(a))]
        rows[name] = row
    return rows


def _messages(user_turns: Sequence[str], answers: Sequence[str]) -> list[dict]:
    """A chat's messages: the user turns with the dataset's answers between them."""
    messages = []
    for n, text in enumerate(user_turns):
        if n:
            messages.append({"role": "assistant", "content": answers[n - 1]})
        messages.append({"role": "user", "content": text})
    return messages


def _chat_picks(agent, user_turns: Sequence[str], answers: Sequence[str], k: int = 20) -> list[str]:
    """The ids of ``k`` picks the chat's path plans for a new user's conversation."""
    ask, _, _ = build_ask(read_turns(_messages(user_turns, answers)), "mdd-eval", k, agent.reader)
    ask.k = k
    return [it.id for it in agent.plan(ask).items]


def mdd_people_recall(agent, plain, popular, titles, mdd_dir: Path, years, seed: int, limit: int) -> dict:
    """Recall@1/10/20 of the film MDD task 3 recommends after "I prefer <person> movies" (turn 3),
    for its dialogues whose turn-3 film maps to the catalog: the whole dialogue through the chat's
    path (``agent``: the catalog with the knowledge base's people joined; ``plain``: without);
    "perfect linking + retrieval" (turn 1's films as seeds, no person); "perfect linking + person"
    (the same seeds, the person the template names as a constraint on every people field: what a
    perfect reader gets); popularity. Earlier answers are not shown items (the dataset's text, not
    Muse's), so they are not excluded."""
    from agent.evaluation import mdd
    from agent.pipeline.answer import Ask
    from agent.pipeline.reader import Constraints
    from retrieval.index import Filters

    linker = agent.reader.vocabulary.people
    dialogues = [
        d for d in mdd.parse_task3(mdd_dir / mdd.TASK3, set(years)) if d.person and titles.ids(d.answers[2:3])
    ]
    sample = random.Random(seed).sample(dialogues, limit) if 0 < limit < len(dialogues) else dialogues
    rows = ("popularity", "perfect linking + retrieval", "perfect linking + person", "muse without facts", "muse")
    hits: dict[str, list[list[int]]] = {name: [] for name in rows}
    read_person = 0
    for d in sample:
        target = set(titles.ids(d.answers[2:3]))
        gold = [i for i in titles.ids(d.named) if i not in target]
        said = {g: "liked" for g in gold}
        person = linker.by_key.get(people_fold(d.person))
        constraints = Constraints(people={person: linker.fields_of(person, None)}) if person else Constraints()
        only = agent.reader.vocabulary.items_for(constraints)
        ranked = {
            "popularity": [i for i in popular if i not in gold][:20],
            "perfect linking + retrieval": [
                it.id for it in agent.plan(Ask("mdd-eval", 20, like_ids=gold, said=said)).items
            ],
            "perfect linking + person": [
                it.id
                for it in agent.plan(
                    Ask(
                        "mdd-eval",
                        20,
                        filters=Filters(only_ids=only),
                        like_ids=gold,
                        said=said,
                        constraints=constraints,
                    )
                ).items
            ],
            "muse without facts": _chat_picks(plain, d.turns, d.answers),
        }
        ask, _, state = build_ask(read_turns(_messages(d.turns, d.answers)), "mdd-eval", 20, agent.reader)
        ask.k = 20
        ranked["muse"] = [it.id for it in agent.plan(ask).items]
        read_person += int(person is not None and person in state.constraints.people)
        for name, ids in ranked.items():
            hits[name].append([int(bool(target & set(ids[:k]))) for k in KS])
    return {
        "dialogues": len(dialogues),
        "n": len(sample),
        "person_in_catalog": sum(1 for d in sample if linker.by_key.get(people_fold(d.person))),
        "person_read": read_person,
        "rows": _recall_rows(hits),
    }


WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)


def rerank_probe(engine, plans: Sequence[tuple], adapter: str | None = None, weight: float | None = None) -> dict:
    """The conversation-aware LLM reranker on Muse's candidates. ``plans``: one per request,
    ``(RankRequest, the target ids, the candidate ids in retrieval order)``
    (``chat_rank_request``). Only a request whose film is among a full 20 candidates can move
    (a valid request): the LLM scores those, from the request's words, the liked films' facts
    and each candidate's facts, fused with the retrieval scores (weight 0 is retrieval order).

    ``weight``: the adapter's validated fusion weight (its manifest's, chosen on the trainer's
    development requests), reported on every request; None (the base model, which has none):
    chosen on the first half of ``plans`` by ``ranker.best_weight`` (R@10, then N@10) and
    reported on the second. Returns ``{"n", "adapter", "chosen_weight", "weight_from",
    "reported": {"requests", "valid", "retrieval", "fused", "gain_N@10", "gain_R@10"},
    "by_weight": {w: metrics on the reported requests}}``; metrics are R@1/R@10/N@10 over all
    the reported requests (a request whose film is not among the 20 counts as a miss either
    way), gains are paired over the valid ones with their 95% intervals."""
    from agent.pipeline.ranker import CANDIDATES, Ranker, best_weight, fuse, order
    from retrieval.metrics import ndcg_at, rank_of

    def valid(plan) -> bool:
        return len(plan[2]) == CANDIDATES and bool(plan[1] & set(plan[2]))

    started = time.perf_counter()
    scored = [n for n, p in enumerate(plans) if valid(p)]
    llm = dict(zip(scored, Ranker(engine, adapter).llm_scores([plans[n][0] for n in scored]) if scored else []))
    seconds = time.perf_counter() - started

    def rank(n: int, w: float) -> int | None:
        request, target, candidates = plans[n]
        if n not in llm:
            return None
        ids = [candidates[i] for i in order(fuse(request.retrieval_scores, llm[n], w))]
        return min(r for r in (rank_of(t, ids) for t in target) if r)

    def metrics(rows: Sequence[int], w: float) -> dict:
        ranks = [rank(n, w) for n in rows]
        size = max(len(rows), 1)
        return {
            "R@1": round(sum(r == 1 for r in ranks if r) / size, 4),
            "R@10": round(sum(r <= 10 for r in ranks if r) / size, 4),
            "N@10": round(sum(ndcg_at(r, 10) for r in ranks) / size, 4),
        }

    half = len(plans) // 2
    if weight is None:
        choose, report = range(half), range(half, len(plans))
        weight = best_weight(lambda w: (metrics(choose, w)["R@10"], metrics(choose, w)["N@10"]), WEIGHTS)
        weight_from = "the first half of the requests"
    else:
        report, weight_from = range(len(plans)), "the adapter's manifest"
    moved = [n for n in report if n in llm]
    gains = {}
    for name, at in (("N@10", lambda r: ndcg_at(r, 10)), ("R@10", lambda r: float(r <= 10))):
        mean, se = paired_gain([at(rank(n, 0.0)) for n in moved], [at(rank(n, weight)) for n in moved])
        gains[f"gain_{name}"] = [round(mean, 4), round(mean - 1.96 * se, 4), round(mean + 1.96 * se, 4)]
    return {
        "n": len(plans),
        "adapter": adapter,
        "chosen_weight": weight,
        "weight_from": weight_from,
        "seconds_per_request": round(seconds / max(len(scored), 1), 3),
        "reported": {
            "requests": len(report),
            "valid": len(moved),
            "retrieval": metrics(report, 0.0),
            "fused": metrics(report, weight),
            **gains,
        },
        "by_weight": {str(w): metrics(report, w) for w in WEIGHTS},
    }


# ------------------------------------------------------------------ the command


def run_chat_eval(
    data: Path | None,
    workdir: Path,
    seed: int = 0,
    conversations: Path | None = None,
    mdd_dir: Path | None = None,
    limit: int = 1000,
    chroma_url: str | None = None,
    engine=None,
    reader_engine=None,
    reader_adapter: str | None = None,
    rerank_adapter: str | None = None,
    rerank_weight: float | None = None,
) -> dict:
    """What ``muse eval --stage chat`` prints. With ``reader_engine`` (an engine serving the
    reader's LoRA adapter ``reader_adapter``; None: the base model) the reading is scored three
    ways on each set: rules, the LLM (every group it reads), and the groups chosen on the
    generated development set (``choose_groups``). ``data``: a dataset folder, or None for the shipped
    demo catalog. The reading is scored on the development split of ``conversations`` (a file
    written by ``conversations.save``; default: the demo's file for the demo, conversations
    generated from the catalog with ``seed`` otherwise), plus every conversation of the demo's
    hand-written set when evaluating the demo; MDD recall is added when ``mdd_dir`` is given (with
    ``engine``, the conversation-aware reranker too: the base model, and ``rerank_adapter`` at
    ``rerank_weight``, its manifest's validated fusion weight).
    Raises ``ValueError`` for ``mdd_dir`` with the demo catalog (MDD's films are MovieLens')."""
    from agent.catalog import load_dataset, load_file
    from agent.evaluation import conversations as gen

    report: dict = {"stage": "chat", "seed": seed, "reader": "rules (agent/pipeline/reader.py); no LLM reader"}
    if data is None:
        if mdd_dir is not None:
            raise ValueError("--mdd needs --data with the MovieLens folder its films map to, not the demo")
        items = load_file(Path(__file__).resolve().parents[1] / "data" / "demo_items.jsonl").items
        popularity: list[str] = []
        sets = {"generated dev": [c for c in gen.load(conversations or gen.DEMO_FILE) if c.split == "dev"]}
        if conversations is None and gen.WRITTEN_FILE.exists():
            sets["written"] = gen.load(gen.WRITTEN_FILE)
    else:
        dataset = load_dataset(data)
        counts = Counter(e.item_id for e in dataset.interactions)
        popularity = [i for i, _ in counts.most_common()]
        items = dataset.items
        convs = gen.load(conversations) if conversations else gen.generate(items, 500, seed, popularity)
        sets = {"generated dev": [c for c in convs if c.split == "dev"]}
    report["reading"] = {name: read_accuracy(convs, items, popularity) for name, convs in sets.items()}
    if reader_engine is not None:
        report["reader"] = f"rules, and the LLM reader (adapter {reader_adapter or 'none: the base model'})"
        report["reading_llm"] = _llm_reading(sets, items, popularity, reader_engine, reader_adapter, report["reading"])
    if mdd_dir is not None and data is not None:
        report["mdd"] = mdd_recall(
            data, mdd_dir, workdir, seed, limit, chroma_url, engine, rerank_adapter, rerank_weight
        )
    return report


def _llm_reading(sets: dict, items, popularity, engine, adapter, rules: dict) -> dict:
    """The LLM reader beside the rules on each set (``run_chat_eval``)."""
    from agent.pipeline.llm_reader import TurnFormat
    from agent.pipeline.reader import READ_GROUPS

    fmt = TurnFormat(Vocabulary(items, popularity))
    out: dict = {}
    readings = {}
    for name, convs in sets.items():
        got, errors, seconds = llm_readings(convs, items, engine, adapter, popularity)
        readings[name] = got
        llm = read_accuracy(convs, items, popularity, got, list(READ_GROUPS))
        out[name] = {"llm": llm, "invalid_replies": len(errors), "seconds_per_turn": round(seconds, 3)}
    chosen = choose_groups(rules["generated dev"], out["generated dev"]["llm"], fmt)
    out["chosen_groups"] = chosen
    for name, convs in sets.items():
        out[name]["combined"] = read_accuracy(convs, items, popularity, readings[name], chosen)
    return out

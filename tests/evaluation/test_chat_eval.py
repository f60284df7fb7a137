"""`muse eval --stage chat`: the measures on hand-worked cases, the generated conversations, the
reader's accuracy on the demo's development and hand-written conversations, and (with the real
datasets) MDD recall beside popularity and perfect linking."""

from __future__ import annotations

import json

import pytest

from agent.catalog import Item, load_file
from agent.cli import main
from agent.evaluation import conversations as gen
from agent.evaluation.chat_eval import read_accuracy, score_reading, wilson
from agent.evaluation.mdd import CatalogTitles, parse_task2, parse_task3, split_titles
from agent.pipeline.ranker import RankRequest
from agent.pipeline.reader import Constraints, Mention, RequestState
from tests.conftest import DEMO, MOVIELENS

MDD = MOVIELENS.parent / "mdd"
KNOWN = {"good the bad and the ugly", "heat", "sense and sensibility", "dark knight", "schindlers list", "alien"}


def test_wilson_interval_by_hand():
    # p = 0.5, n = 10: centre 0.5, half-width 1.96 * sqrt(0.025 + 0.0096) / 1.384 = 0.2634
    lo, hi = wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert wilson(0, 0) == (0.0, 0.0)
    assert wilson(0, 20)[0] == 0.0 and wilson(20, 20)[1] == 1.0


def test_title_lists_keep_commas_and_ands_inside_titles():
    assert split_titles("The Good, the Bad and the Ugly, Heat, and Sense and Sensibility", KNOWN) == [
        "The Good, the Bad and the Ugly",
        "Heat",
        "Sense and Sensibility",
    ]
    assert split_titles("The Dark Knight and Schindler's List", KNOWN) == ["The Dark Knight", "Schindler's List"]
    # unknown parts stay apart instead of swallowing their neighbours
    assert split_titles("Alien, Nowhere Film, Other Unknown, and Heat", KNOWN) == [
        "Alien",
        "Nowhere Film",
        "Other Unknown",
        "Heat",
    ]


def test_task2_templates_and_bad_lines(tmp_path):
    f = tmp_path / "task2.txt"
    f.write_text(
        "1 I liked Alien, Heat, and The Dark Knight. Can you suggest a film?\tSense and Sensibility\n"
        "1 Alien and Heat are films I really liked. Would you recommend a movie?\tThe Good, the Bad and the Ugly\n"
        "1 I watched the films Alien and Heat and loved them. Can you suggest a movie?\tHeat\n"
        "1 Something else entirely?\tAlien\n"
    )
    rows = parse_task2(f, KNOWN)
    assert [r.named for r in rows] == [("Alien", "Heat", "The Dark Knight"), ("Alien", "Heat"), ("Alien", "Heat"), ()]
    assert rows[1].targets == ("The Good, the Bad and the Ugly",)
    f.write_text("1 I liked Alien. Can you suggest a film?\tHeat\nno tab here\n")
    with pytest.raises(ValueError, match=r"task2.txt:2: expected"):
        parse_task2(f, KNOWN)


def test_task3_dialogues_their_films_and_person(tmp_path):
    f = tmp_path / "task3.txt"
    f.write_text(
        "1 I liked Alien, Heat, and The Dark Knight. I'm looking for a surreal movie.\tSense and Sensibility\n"
        "2 Who is that directed by?\tAng Lee\n"
        "3 I rate Barry Levinson movies. Any other suggestions?\tHeat\n"
        "\n"
        "1 Alien and Heat are films I really liked. I'm looking for a Horror movie.\tAlien\n"
        "2 Who does that star?\tSigourney Weaver\n"
        "1 I watched the films Alien and Heat and loved them. I'm looking for a French movie.\tHeat\n"
        "2 Who wrote that?\tSomeone\n"
        "3 I like Natasha Henstridge movies more. Do you know anything else?\tAlien\n"
    )
    dialogues = parse_task3(f, KNOWN)
    assert [len(d.turns) for d in dialogues] == [3, 2, 3]  # a "1" starts a dialogue, blank line or not
    assert [d.named for d in dialogues] == [("Alien", "Heat", "The Dark Knight"), ("Alien", "Heat"), ("Alien", "Heat")]
    assert [d.person for d in dialogues] == ["Barry Levinson", None, "Natasha Henstridge"]
    assert dialogues[0].answers == ("Sense and Sensibility", "Ang Lee", "Heat")
    f.write_text("1 I liked Alien. I'm looking for a film.\tHeat\n3 I rate X movies. Any other suggestions?\tAlien\n")
    with pytest.raises(ValueError, match=r"task3.txt:2: turn 3 follows turn 1"):
        parse_task3(f, KNOWN)


def test_titles_map_by_the_knowledge_base_year():
    items = [Item("s80", "Shining, The", year=1980), Item("s97", "Shining, The", year=1997), Item("a", "Alien")]
    titles = CatalogTitles(items, {"shining": 1980})
    assert titles.item_id("The Shining") == "s80" and titles.item_id("Alien") == "a"
    assert CatalogTitles(items, {}).item_id("The Shining") is None  # ambiguous: not guessed
    assert titles.ids(["Alien", "Nowhere", "alien"]) == ["a"]


def _conv(**expected) -> gen.Conversation:
    return gen.Conversation("c", "k", "dev", [{"role": "user", "content": "x"}], gen._state(**expected))


def test_score_reading_by_hand():
    items = [
        Item("h", "H", categories=("Horror",), metadata={"runtime_min": 85}),
        Item("c", "C", categories=("Comedy",), metadata={"runtime_min": 120}),
        Item("t", "T", categories=("Thriller",), metadata={"runtime_min": 89}),
    ]
    conv = _conv(mentions={"c": "liked"}, constraints={"ranges": {"runtime_min": [None, 89]}})
    # "under 90" read as at most 89.5: the same items admitted, so right; sentiment wrong
    state = RequestState(
        mentions=[Mention("c", "C", "C", "seen")], constraints=Constraints(ranges={"runtime_min": (None, 89.5)})
    )
    assert score_reading(conv, state, items) == {
        "named": True,
        "named+sentiment": False,
        "constraints": True,
        "constraints.runtime_min": True,
    }
    scored = score_reading(conv, state, items)
    assert "constraints.categories" not in scored and "count" not in scored and "unclear" not in scored
    # a negation dropped: Horror admitted where it should not be
    conv = _conv(constraints={"excluded_categories": ["Horror"]})
    wrong = score_reading(conv, RequestState(), items)
    assert wrong == {"constraints": False, "constraints.categories": False}
    assert score_reading(_conv(count=3), RequestState(count=5), items) == {"count": False}
    assert score_reading(_conv(unclear="greeting"), RequestState(unclear="greeting"), items) == {"unclear": True}
    # a soft preference is scored apart from the hard constraints
    soft = _conv(preferences={"categories": ["Horror"]})
    assert score_reading(soft, RequestState(preferences=Constraints(categories=["Horror"])), items) == {
        "preferences": True
    }
    assert score_reading(soft, RequestState(constraints=Constraints(categories=["Horror"])), items) == {
        "preferences": False,
        "constraints": False,
        "constraints.categories": False,
    }


def test_generation_is_seeded_split_and_names_real_items():
    items = load_file(DEMO / "demo_items.jsonl").items
    a, b = gen.generate(items, 120, seed=3), gen.generate(items, 120, seed=3)
    assert [c.messages for c in a] == [c.messages for c in b]
    assert [c.messages for c in a] != [c.messages for c in gen.generate(items, 120, seed=4)]
    ids = {it.id for it in items}
    assert all(set(c.expected["mentions"]) <= ids for c in a)
    assert 0.25 < sum(c.split == "dev" for c in a) / len(a) < 0.55
    assert {c.kind for c in a} == set(gen.KINDS) | set(gen.LATER_KINDS)
    # later kinds come after, from their own stream: the first kinds' conversations do not move
    assert [c.messages for c in gen.generate(items, 120, seed=3, later=0)] == [c.messages for c in a[:120]]
    assert len(a) == 120 + (120 // len(gen.KINDS)) * len(gen.LATER_KINDS)
    # a catalog without metadata: the series request cannot be honoured
    bare = [
        Item(f"m{n}", f"Film Number {n}", categories=("Drama", "Comedy")[n % 2 :], year=1990 + n % 30)
        for n in range(60)
    ]
    series = [c for c in gen.generate(bare, 60, seed=0) if c.kind == "series"]
    assert series and all(c.expected["unsupported"] and not c.expected["constraints"] for c in series)
    with pytest.raises(ValueError, match="unambiguous titles"):
        gen.generate(bare[:5], 10)


def test_the_shipped_conversations_are_what_the_generator_writes(tmp_path):
    items = load_file(DEMO / "demo_items.jsonl").items
    gen.save(gen.generate(items, n=700, seed=0), tmp_path / "c.jsonl")
    assert (tmp_path / "c.jsonl").read_text() == gen.DEMO_FILE.read_text()


@pytest.mark.parametrize("which", ["generated dev", "written"])
def test_reader_accuracy_on_the_demo_conversations(which):
    """Acceptance (issue 23): named items and sentiment at least 95%, constraints at least 90%."""
    items = load_file(DEMO / "demo_items.jsonl").items
    if which == "written":
        convs = gen.load(gen.WRITTEN_FILE)
    else:
        convs = [c for c in gen.load(gen.DEMO_FILE) if c.split == "dev"]
    fields = read_accuracy(convs, items)["fields"]
    assert fields["named"]["accuracy"] >= 0.95 and fields["named+sentiment"]["accuracy"] >= 0.95
    assert fields["constraints"]["accuracy"] >= 0.90
    assert fields["named"]["n"] >= 40 and fields["constraints"]["n"] >= 40


def test_eval_chat_command_on_the_demo(capsys):
    assert main(["eval", "--stage", "chat", "--data", "demo", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["reading"]) == {"generated dev", "written"}
    assert report["reading"]["generated dev"]["n"] > 200
    assert main(["eval", "--stage", "chat", "--data", "demo", "--mdd", str(MDD)]) == 2
    assert "--mdd needs --data" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.movielens
def test_mdd_recall_beside_popularity_and_perfect_linking(movielens, tmp_path, monkeypatch, capsys):
    """The real datasets (about 10 min: the retrieval fit): Muse through the chat's reader is at
    least as good as perfect title linking on MDD's development requests, and far above popularity;
    with the knowledge base's credits, task 3's "I prefer <person> movies" is honoured."""
    if not (MDD / "task2_recs_dev.txt").exists():
        pytest.skip(f"{MDD} is absent")
    monkeypatch.setenv("MUSE_DATA_DIR", str(tmp_path))
    args = ["eval", "--stage", "chat", "--data", str(movielens), "--mdd", str(MDD), "--limit", "400", "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    m = report["mdd"]
    # 7,744 of the 10,000 requests map (every named film and the target linked to a catalog title)
    assert m["requests"] == 10000 and m["mapped"] > 7500 and m["n"] == 400
    rows = m["rows"]
    assert rows["muse"]["R@10"] > 2 * rows["popularity"]["R@10"]
    assert m["muse_minus_perfect_R@10"]["ci"][1] >= 0  # not worse than perfect linking, within noise
    assert m["linking"]["precision"] > 0.85 and m["linking"]["recall"] > 0.9
    reading = report["reading"]["generated dev"]["fields"]
    assert reading["named"]["accuracy"] >= 0.9 and reading["constraints"]["accuracy"] >= 0.9
    # the knowledge base's credits joined: task 3's "I prefer <person> movies" is read and honoured
    assert "facts joined to" in m["facts"]
    t = m["task3"]
    assert t["n"] == 400 and t["person_read"] >= 0.95 * t["person_in_catalog"] >= 0.85 * t["n"]
    r3 = t["rows"]
    assert r3["muse"]["R@10_ci"][0] > r3["muse without facts"]["R@10_ci"][1]  # intervals apart
    assert r3["muse"]["R@10"] > 0.5 and r3["muse"]["R@10"] >= r3["perfect linking + person"]["R@10"] - 0.1
    assert rows["muse"]["R@10_ci"][1] >= rows["muse without facts"]["R@10_ci"][0]  # task 2 not hurt


class _LabelEngine:
    """Label log-probabilities from a rule: the label of the candidate whose facts hold ``word``
    scores 0, every other label -10 (uniform when ``word`` is None)."""

    def __init__(self, word):
        self.word, self.seen = word, []

    def label_logprobs(self, conversations, labels, adapter=None, timeout=None):
        out = []
        for conv in conversations:
            self.seen.append(conv[-1]["content"])
            lines = [ln for ln in conv[-1]["content"].splitlines() if ln[:2] in {f"{x}." for x in labels}]
            out.append([0.0 if self.word and self.word in ln else -10.0 for ln in lines])
        return out


def _plans(n=8):
    plans = []
    for p in range(n):
        items = [Item(f"p{p}-{i}", f"Film {i}", categories=("Drama",), year=1990) for i in range(20)]
        items[14] = Item(f"p{p}-14", "Film 14", categories=("Western",), year=1990)  # the one asked for
        scores = [1.0 - i / 20 for i in range(20)]
        request = RankRequest.for_chat(f"a western please {p}", items, scores)
        plans.append((request, {f"p{p}-14"}, [it.id for it in items]))
    return plans


def test_rerank_probe_chooses_the_weight_on_the_first_half_or_takes_the_adapters():
    from agent.evaluation.chat_eval import rerank_probe

    plans = _plans()
    plans.insert(3, (plans[3][0], {"elsewhere"}, plans[3][2]))  # its film is not among the 20: never moves
    engine = _LabelEngine("Western")
    report = rerank_probe(engine, plans)
    assert report["n"] == 9 and report["chosen_weight"] > 0 and len(engine.seen) == 8  # only the valid are scored
    r = report["reported"]
    assert (r["requests"], r["valid"]) == (5, 5)  # the second half of the 9
    assert r["retrieval"]["R@10"] == 0.0 and r["fused"]["R@1"] == 1.0  # retrieval order has it 15th
    assert r["gain_R@10"][0] == 1.0 and r["gain_N@10"][0] == 1.0
    assert "They asked: a western please" in engine.seen[0] and "Film 14 (1990) · Western" in engine.seen[0]
    # an LLM that knows nothing: weight 0, retrieval order kept
    assert rerank_probe(_LabelEngine(None), plans)["chosen_weight"] == 0.0
    # an adapter's own weight is reported on every request, the unmovable one a miss either way
    tuned = rerank_probe(_LabelEngine("Western"), plans, "chat-rank", 0.5)["reported"]
    assert (tuned["requests"], tuned["valid"]) == (9, 8) and tuned["fused"]["R@1"] == round(8 / 9, 4)

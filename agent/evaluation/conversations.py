"""Development conversations generated from a catalog, each with the request state it states.

A conversation is the messages a client sends (user turns, and Muse's earlier replies in the
``1. Title (year) [#id]`` form the chat writes) plus ``expected``: what a correct reading holds
(the films named, with the sentiment each; the earlier picks pointed at; the constraints; the
count; whether the newest turn is a greeting; whether something asked for cannot be honoured).

The phrasings are written the way people ask (the issue's examples and variations on them);
titles are named the way people write them: exact, lower case, without the leading article or
with "The" moved back to the front, with or without the year, with a small typo, or cut at the
subtitle. Generation is seeded: the same catalog and seed give the same conversations. A share
``DEV_SHARE`` of them is ``dev``; those are phrased only with held-out phrasings, so the
development accuracy says how the reader does on wordings it was not tuned on.

The shipped demo's conversations are kept in ``agent/data/conversations_demo.jsonl``
(``python -m agent.evaluation.conversations``); a MovieLens catalog's are generated from the
dataset folder when evaluated (its titles stay out of the repository).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from agent.catalog import Item
from agent.pipeline.chat import picks_text
from agent.pipeline.reader import DARKNESS, ERA, SHORT_MINUTES, Constraints, normalize_title

DEV_SHARE = 0.4
DEMO_FILE = Path(__file__).resolve().parents[1] / "data" / "conversations_demo.jsonl"
# Written by hand, apart from the reader's rules and never used to tune them: a test set.
WRITTEN_FILE = DEMO_FILE.with_name("conversations_demo_written.jsonl")

# Everyday words for a category, and the categories they mean (only those the catalog has count).
GENRE_WORDS = {
    "Comedy": ["a comedy", "something funny", "comedies"],
    "Thriller": ["a thriller", "thrillers", "something with suspense"],
    "Horror": ["horror", "a horror film", "something scary"],
    "Drama": ["a drama", "dramas"],
    "Romance": ["a romance", "something romantic"],
    "Sci-Fi": ["sci-fi", "science fiction"],
    "Documentary": ["a documentary", "documentaries"],
    "Western": ["a western", "westerns"],
    "Musical": ["a musical", "musicals"],
    "Animation": ["an animated film", "animation"],
    "War": ["a war film"],
    "Crime": ["a crime film", "crime"],
    "Mystery": ["a mystery", "mysteries"],
    "Fantasy": ["fantasy", "a fantasy film"],
    "Action": ["an action film", "action"],
    "Adventure": ["an adventure", "adventure films"],
}
NEGATED_GENRE = {
    "Horror": ["no horror", "nothing scary", "not horror"],
    "Musical": ["not a musical", "no musicals"],
    "Romance": ["no romance", "nothing romantic"],
    "Comedy": ["no comedies", "nothing funny"],
    "Documentary": ["no documentaries"],
    "Western": ["no westerns"],
    "Animation": ["no cartoons", "nothing animated"],
    "War": ["no war films"],
}
VIOLENT = ("Action", "War", "Crime", "Horror")
COUNT_WORDS = {2: ["two", "a couple of", "2"], 3: ["three", "a few", "3"], 4: ["four", "4"], 6: ["six", "6"]}


@dataclass
class Conversation:
    """``messages``: OpenAI-style ``{"role", "content"}`` dicts, oldest first; ``expected``:
    ``mentions`` (item id -> sentiment), ``pointed_like`` / ``pointed_exclude`` (item ids),
    ``constraints`` (``Constraints`` fields), ``count``, ``unclear``, ``unsupported`` (bool)."""

    id: str
    kind: str
    split: str
    messages: list[dict]
    expected: dict

    def constraints(self, key: str = "constraints") -> Constraints:
        """The expected hard constraints (``key="preferences"``: the soft ones)."""
        c = self.expected.get(key) or {}
        ranges = {k: tuple(v) for k, v in (c.get("ranges") or {}).items()}
        return Constraints(**{**c, "ranges": ranges})


@dataclass
class _Catalog:
    items: list[Item]
    by_key: dict[str, list[Item]]
    categories: list[str]
    newest: int | None
    fields: dict[str, set[str]]  # metadata text field -> values
    runtime: bool
    famous: list[Item] = field(default_factory=list)  # items to name: unambiguous titles, popular first

    @classmethod
    def of(cls, items: Sequence[Item], popularity: Sequence[str] = ()) -> _Catalog:
        by_key: dict[str, list[Item]] = {}
        for it in items:
            by_key.setdefault(normalize_title(it.title), []).append(it)
        fields: dict[str, set[str]] = {}
        for it in items:
            for k, v in (it.metadata or {}).items():
                if isinstance(v, str):
                    fields.setdefault(k, set()).add(v)
        rank = {i: n for n, i in enumerate(popularity)}
        famous = [
            it
            for it in sorted(items, key=lambda i: (rank.get(i.id, len(rank)), i.id))
            if len(by_key[normalize_title(it.title)]) == 1 and len(normalize_title(it.title)) >= 4
        ]
        years = [it.year for it in items if it.year]
        return cls(
            list(items),
            by_key,
            sorted({c for it in items for c in it.categories}),
            max(years) if years else None,
            fields,
            any(isinstance((it.metadata or {}).get("runtime_min"), (int, float)) for it in items),
            famous[:300] if popularity else famous,
        )


def surface(item: Item, rng: random.Random) -> str:
    """How a person might write ``item``'s title: ``"Shining, The"`` as "The Shining", "the
    shining" or "Shining"; sometimes with its year, a typo, or cut at the subtitle."""
    title = re.sub(r"\s*\(\d{4}\)\s*$", "", item.title)
    if m := re.match(r"^(.*), (The|A|An)$", title):
        title = f"{m[2]} {m[1]}"
    roll = rng.random()
    if roll < 0.15:
        title = title.lower() if len(title.split()) > 1 else title
    elif roll < 0.25 and title.split()[0] in ("The", "A", "An") and len(title.split()) > 2:
        title = " ".join(title.split()[1:])
    elif roll < 0.35 and ":" in title and len(title.split(":")[0].split()) >= 2:
        title = title.split(":")[0]
    elif roll < 0.45:
        words = title.split()
        long = [n for n, w in enumerate(words) if len(w) >= 6 and w.isalpha()]
        if long and len(normalize_title(title)) >= 10:
            n = rng.choice(long)
            w = words[n]
            k = rng.randrange(1, len(w) - 2)
            words[n] = w[:k] + w[k + 1] + w[k] + w[k + 2 :]  # two letters swapped
            title = " ".join(words)
    if item.year and rng.random() < 0.2:
        title += f" ({item.year})"
    return title


def _genre(cat: _Catalog, rng: random.Random, avoid: Sequence[str] = ()) -> str:
    options = [c for c in GENRE_WORDS if c in cat.categories and c not in avoid]
    return rng.choice(options)


def _words(category: str, rng: random.Random) -> str:
    return rng.choice(GENRE_WORDS[category])


def _mentions(cat: _Catalog, rng: random.Random, n: int) -> list[Item]:
    return rng.sample(cat.famous[: max(n, min(len(cat.famous), 150))], n)


def _state(**kw) -> dict:
    out = {
        "mentions": {},
        "pointed_like": [],
        "pointed_exclude": [],
        "constraints": {},
        "count": None,
        "unclear": None,
        "unsupported": False,
    }
    out.update(kw)
    return out


def _say(rng: random.Random, dev: bool, train: Sequence, held_out: Sequence):
    """One phrasing: from ``train`` for training conversations, from ``held_out`` (phrasings the
    training set never uses, written apart from the reader's rules) for development ones."""
    return rng.choice(held_out if dev else train)


def _listed(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _likes(cat, rng, dev):
    films = _mentions(cat, rng, rng.choice((1, 2, 3)))
    listed = _listed([surface(f, rng) for f in films])
    one = len(films) == 1
    text = _say(
        rng,
        dev,
        [
            f"I loved {listed}. What else would I like?",
            f"I really enjoyed {listed}, any suggestions?",
            f"Big fan of {listed}. Recommend me something.",
            f"{listed} {'is' if one else 'are'} my favourite. What should I watch next?",
            f"I like {listed}. Got anything similar?",
        ],
        [
            f"{listed} {'was' if one else 'were'} amazing! What should I see next?",
            f"My favourite films are {listed}. Suggestions?",
            f"I adore {listed}. Anything else for me?",
            f"Just watched {listed} and loved {'it' if one else 'them'}. What now?",
        ],
    )
    return [text], _state(mentions={f.id: ("liked") for f in films})


def _dislike(cat, rng, dev):
    bad = _mentions(cat, rng, 1)[0]
    g = _genre(cat, rng)
    name, genre = surface(bad, rng), _words(g, rng)
    text = _say(
        rng,
        dev,
        [
            f"I really did not like {name}. Give me {genre}.",
            f"{name} was boring. I want {genre} instead.",
            f"I hated {name}; something else, {genre} maybe?",
        ],
        [
            f"{name} was terrible. Show me {genre}.",
            f"I couldn't stand {name}. Any good {genre.removeprefix('a ').removeprefix('an ')}?",
            f"Not a fan of {name}. {genre.capitalize()}, please.",
        ],
    )
    return [text], _state(mentions={bad.id: "disliked"}, constraints={"categories": [g]})


def _like_and_dislike(cat, rng, dev):
    good, bad = _mentions(cat, rng, 2)
    a, b = surface(good, rng), surface(bad, rng)
    text = _say(
        rng,
        dev,
        [f"I loved {a} but hated {b}. What next?", f"{a} was great, {b} not so much. Ideas?"],
        [f"I enjoyed {a}, but {b} was awful. Recommend something.", f"Loved {a}. Disliked {b}. What else?"],
    )
    return [text], _state(mentions={good.id: "liked", bad.id: "disliked"})


def _seen(cat, rng, dev):
    film = _mentions(cat, rng, 1)[0]
    g = _genre(cat, rng)
    name, genre = surface(film, rng), _words(g, rng)
    text = _say(
        rng,
        dev,
        [
            f"I've already seen {name}. What other {genre} is there?",
            f"Already watched {name}, so {genre} please, something else.",
        ],
        [f"I saw {name} last week. Another {genre.removeprefix('a ').removeprefix('an ')}?"],
    )
    return [text], _state(mentions={film.id: "seen"}, constraints={"categories": [g]})


def _like_this(cat, rng, dev):
    film = _mentions(cat, rng, 1)[0]
    name = surface(film, rng)
    text = _say(
        rng,
        dev,
        [f"Something like {name}, please.", f"Any more films like {name}?"],
        [f"Anything like {name}?", f"I want movies like {name}."],
    )
    return [text], _state(mentions={film.id: "mentioned"})


def _negation(cat, rng, dev):
    g = _genre(cat, rng, avoid=list(NEGATED_GENRE))
    bad = rng.choice([c for c in NEGATED_GENRE if c in cat.categories and c != g])
    genre, no = _words(g, rng), rng.choice(NEGATED_GENRE[bad])
    text = _say(
        rng,
        dev,
        [f"{genre.capitalize()}, but {no} please.", f"I want {genre}. {no.capitalize()}!"],
        [f"{genre.capitalize()} would be nice, though {no}.", f"Looking for {genre}; {no}, thanks."],
    )
    return [text], _state(constraints={"categories": [g], "excluded_categories": [bad]})


def _kids(cat, rng, dev):
    family = [c for c in ("Family", "Children") if c in cat.categories]
    text = _say(
        rng,
        dev,
        ["Something for my kids, nothing violent or scary.", "A film for the children, no violence please."],
        [
            "Movie night with the kids: nothing violent, nothing scary.",
            "Something the children can watch, without violence.",
        ],
    )
    banned = [c for c in VIOLENT if c in cat.categories]
    return [text], _state(constraints={"categories": family, "excluded_categories": banned})


def _era(cat, rng, dev):
    g = _genre(cat, rng)
    newest = cat.newest
    pattern, phrase, bounds = rng.choice(
        [
            (ERA[0], "not too old", None),
            (ERA[1], "recent", None),
            (ERA[2], "classic", None),
            (None, "from the 90s", (1990, 1999)),
            (None, "from the 1980s", (1980, 1989)),
            (None, "made after 2005", (2006, None)),
            (None, "released before 1980", (None, 1979)),
            (None, "from 1995 to 2000", (1995, 2000)),
            (None, "since 2010", (2010, None)),
        ]
    )
    if bounds is None:
        lo, hi = pattern[1]
        bounds = (newest - lo if lo is not None else None, newest - hi if hi is not None else None)
    genre = _words(g, rng)
    bare = genre.removeprefix("a ").removeprefix("an ")
    if phrase == "classic":
        text = _say(rng, dev, [f"A classic {bare}, please."], [f"Any classic {bare}?"])
    else:
        text = _say(
            rng,
            dev,
            [f"{genre.capitalize()}, {phrase}.", f"Give me {genre} {phrase}, please."],
            [f"I'd like {genre} {phrase}.", f"Do you have {genre} {phrase}?"],
        )
    return [text], _state(constraints={"categories": [g], "year_min": bounds[0], "year_max": bounds[1]})


def _count(cat, rng, dev):
    g = _genre(cat, rng)
    n = rng.choice(list(COUNT_WORDS))
    plural = {
        "Comedy": "comedies",
        "Documentary": "documentaries",
        "Thriller": "thrillers",
        "Western": "westerns",
        "Musical": "musicals",
        "Drama": "dramas",
        "Mystery": "mysteries",
    }.get(g)
    noun = plural or f"{_words(g, rng).removeprefix('a ').removeprefix('an ')} films"
    word = rng.choice(COUNT_WORDS[n])
    text = _say(
        rng,
        dev,
        [f"Give me {word} {noun}.", f"Could you suggest {word} {noun}?"],
        [f"I need {word} {noun} for the weekend.", f"List {word} {noun}, please."],
    )
    n = 3 if word == "a few" else n
    return [text], _state(constraints={"categories": [g]}, count=n)


def _greeting(cat, rng, dev):
    text = _say(
        rng,
        dev,
        ["hi", "Hello!", "hey there", "Thanks!", "good morning", "Thanks for the suggestions"],
        ["Hey!", "hello muse", "Good evening", "thank you so much", "Hi there!"],
    )
    return [text], _state(unclear="greeting")


def _series(cat, rng, dev):
    text = _say(
        rng,
        dev,
        ["A series I can binge.", "Any good TV shows?", "I want a series, not a film."],
        ["Something with episodes I can binge this weekend.", "Recommend a show, not a movie."],
    )
    if "kind" not in cat.fields:
        return [text], _state(unsupported=True)
    c = {"values": {"kind": ["series"]}}
    if re.search(r"not a (?:film|movie)", text):
        c["excluded_values"] = {"kind": ["film"]}
    return [text], _state(constraints=c)


def _runtime(cat, rng, dev):
    options = [
        ("under 90 minutes", (None, 89)),
        ("something short", (None, SHORT_MINUTES)),
        ("under two hours", (None, 119)),
        ("at most 100 minutes", (None, 100)),
    ]
    held_out = [
        ("less than 100 minutes", (None, 99)),
        ("no longer than 95 minutes", (None, 95)),
        ("a quick one", (None, SHORT_MINUTES)),
    ]
    phrase, bound = _say(rng, dev, options, held_out)
    g = _genre(cat, rng)
    text = f"{_words(g, rng).capitalize()}, {phrase}."
    if not cat.runtime:
        return [text], _state(constraints={"categories": [g]}, unsupported=True)
    return [text], _state(constraints={"categories": [g], "ranges": {"runtime_min": list(bound)}})


def _tone(cat, rng, dev):
    phrase, tone = _say(
        rng,
        dev,
        [
            ("I had a rough week, something uplifting", "uplifting"),
            ("something feel-good", "uplifting"),
            ("something dark", "dark"),
            ("a quirky one", "quirky"),
            ("something thought-provoking", "thoughtful"),
            ("something tense", "tense"),
            ("a light film", "light"),
        ],
        [
            ("I need cheering up, something heartwarming", "uplifting"),
            ("a bleak one", "dark"),
            ("something suspenseful", "tense"),
            ("something offbeat", "quirky"),
            ("something lighthearted", "light"),
        ],
    )
    if "tone" not in cat.fields:
        fallback = {"uplifting": ("Comedy", "Family"), "light": ("Comedy",), "tense": ("Thriller",)}
        cats = [c for c in fallback.get(tone, ()) if c in cat.categories]
        return [phrase + "."], _state(constraints={"categories": cats}, unsupported=not cats)
    return [phrase + "."], _state(constraints={"values": {"tone": [tone]}})


def _soft(cat, rng, dev):
    """A genre asked for, and an era, a kind or a runtime asked for softly."""
    g = _genre(cat, rng)
    cue = _say(rng, dev, ["ideally {}", "preferably {}"], ["{} if possible", "{} if you can"])
    options = [("from the 90s", {"year_min": 1990, "year_max": 1999}), ("made after 2005", {"year_min": 2006})]
    if "kind" in cat.fields:
        options.append(("a series", {"values": {"kind": ["series"]}}))
    if cat.runtime:
        options.append(("under two hours", {"ranges": {"runtime_min": [None, 119]}}))
    phrase, preferences = rng.choice(options)
    text = f"{_words(g, rng).capitalize()}, {cue.format(phrase)}."
    return [text], _state(constraints={"categories": [g]}, preferences=preferences)


def _first_answer(cat, rng, constraints: Constraints, n: int = 4) -> list[Item]:
    fits = [it for it in cat.famous if constraints.admits(it)]
    return rng.sample(fits, min(n, len(fits)))


def _follow_up(cat, rng, dev):
    """Two turns: a request, the picks Muse showed, then a follow-up on them."""
    g = _genre(cat, rng, avoid=["Comedy"])
    first = {"categories": [g]}
    shown = _first_answer(cat, rng, Constraints(categories=[g]))
    if len(shown) < 3:
        return _likes(cat, rng, dev)
    options = ["funnier", "newer", "much newer", "second", "not that one", "not the third"]
    if "tone" in cat.fields:
        options.append("darker")
    if cat.runtime:
        options.append("shorter")
    which = rng.choice(options)
    c = dict(first)
    kw = {}
    if which == "funnier":
        text = _say(
            rng,
            dev,
            ["Not that one, something funnier.", "Something funnier, please."],
            ["Hmm, can it be funnier?", "Not that one. Funnier?"],
        )
        c = {"categories": ["Comedy"]}
        if text.startswith("Not"):
            kw["pointed_exclude"] = [shown[0].id]
    elif which in ("newer", "much newer"):
        mean = round(sum(it.year for it in shown) / len(shown))
        text = _say(rng, dev, [f"Something {which}, please."], [f"Those are old. {which.capitalize()}?"])
        c["year_min"] = mean + (10 if which == "much newer" else 1)
    elif which == "second":
        text = _say(
            rng, dev, ["More like the second one."], ["Something like the 2nd one?", "Others like the second."]
        )
        kw["pointed_like"] = [shown[1].id]
    elif which == "not that one":
        text = _say(rng, dev, ["Not that one. Another one?"], ["No, not that one."])
        kw["pointed_exclude"] = [shown[0].id]
    elif which == "not the third":
        text = _say(rng, dev, ["Not the third one, I saw it."], ["Skip the third one."])
        kw["pointed_exclude"] = [shown[2].id]
    elif which == "darker":
        text = _say(rng, dev, ["Darker, please.", "Something darker."], ["Can you go darker?", "Make it darker."])
        floor = min(4, max(2, max(DARKNESS.get(it.metadata.get("tone"), 2) for it in shown) + 1))
        c["values"] = {"tone": [t for t, d in DARKNESS.items() if d >= floor and t in cat.fields["tone"]]}
    else:  # shorter
        mean = sum(it.metadata["runtime_min"] for it in shown) / len(shown)
        text = _say(rng, dev, ["Something shorter?"], ["Too long. Shorter, please."])
        c["ranges"] = {"runtime_min": [None, mean - 1]}
    messages = [_words(g, rng).capitalize() + ", please.", picks_text(shown), text]
    return messages, _state(constraints=c, **kw)


KINDS: dict[str, Callable] = {
    "likes": _likes,
    "dislike": _dislike,
    "like_and_dislike": _like_and_dislike,
    "seen": _seen,
    "like_this": _like_this,
    "negation": _negation,
    "kids": _kids,
    "era": _era,
    "count": _count,
    "greeting": _greeting,
    "series": _series,
    "runtime": _runtime,
    "tone": _tone,
    "follow_up": _follow_up,
}


# Kinds added after the first sets were written: generated after the ``KINDS`` conversations,
# from their own random stream, so the conversations of ``KINDS`` stay as they were.
LATER_KINDS: dict[str, Callable] = {"soft": _soft}


def generate(
    items: Sequence[Item], n: int = 500, seed: int = 0, popularity: Sequence[str] = (), later: int | None = None
) -> list[Conversation]:
    """``n`` conversations over ``items`` (kinds in turn, phrasing and films drawn with ``seed``),
    then ``later`` of each of ``LATER_KINDS`` (default: as many as of each of ``KINDS``).
    ``popularity``: item ids, most popular first; titles people name are drawn from the top 300
    (all unambiguous titles when empty). Raises ``ValueError`` for a catalog too small to name
    films from (fewer than 20 unambiguous titles)."""
    cat = _Catalog.of(items, popularity)
    if len(cat.famous) < 20:
        raise ValueError(f"the catalog has {len(cat.famous)} unambiguous titles; generating needs at least 20")
    rng = random.Random(seed)
    out = []
    kinds = list(KINDS)
    for k in range(n):
        kind = kinds[k % len(kinds)]
        dev = random.Random(f"{seed}-{k}").random() < DEV_SHARE
        turns, expected = KINDS[kind](cat, rng, dev)
        messages = [{"role": "assistant" if i % 2 else "user", "content": t} for i, t in enumerate(turns)]
        cid = hashlib.sha1(json.dumps([seed, k, messages]).encode()).hexdigest()[:12]
        out.append(Conversation(cid, kind, "dev" if dev else "train", messages, expected))
    rng = random.Random(f"{seed}-later")
    for kind, make in LATER_KINDS.items():
        for k in range(n // len(kinds) if later is None else later):
            dev = random.Random(f"{seed}-{kind}-{k}").random() < DEV_SHARE
            turns, expected = make(cat, rng, dev)
            messages = [{"role": "assistant" if i % 2 else "user", "content": t} for i, t in enumerate(turns)]
            cid = hashlib.sha1(json.dumps([seed, kind, k, messages]).encode()).hexdigest()[:12]
            out.append(Conversation(cid, kind, "dev" if dev else "train", messages, expected))
    return out


def save(conversations: Sequence[Conversation], path: Path) -> None:
    path.write_text("".join(json.dumps(asdict(c)) + "\n" for c in conversations), encoding="utf-8")


def load(path: Path) -> list[Conversation]:
    """Conversations written by ``save``. Raises ``ValueError`` naming the line of a bad row."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        try:
            out.append(Conversation(**json.loads(line)))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}:{n}: not a conversation ({e})") from None
    return out


def main() -> None:
    from agent.catalog import load_file

    items = load_file(DEMO_FILE.with_name("demo_items.jsonl")).items
    save(generate(items, n=700, seed=0), DEMO_FILE)
    print(f"wrote {DEMO_FILE}")


if __name__ == "__main__":
    main()

"""Catalog items and user interactions, and the loaders that read them from files.

Formats:
- generic: ``items.jsonl`` / ``items.csv`` and ``interactions.jsonl`` / ``interactions.csv``
  (a folder holding them, or the files themselves);
- MovieLens ml-latest-small (``movies.csv``, ``ratings.csv``, optional ``tags.csv``);
- MovieLens 100k (``u.data``, ``u.item``).

Every loader validates the whole input before returning anything, and every problem is an
``IngestError`` naming the file and line, so a caller can write all-or-nothing.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Thumbs on the text Muse wrote about an item (its explanation or its pitch), not on the item.
TEXT_RATING_KINDS = ("explanation_like", "explanation_dislike", "draft_like", "draft_dislike")
KINDS = ("view", "click", "like", "dislike", "skip", "rating", "impression", "dwell", *TEXT_RATING_KINDS)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@\-]{0,127}$")
_YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")
# The years an item may carry, one definition: ingest, the API's items and filters, the LLM
# reader's schema.
YEAR_MIN, YEAR_MAX = 1800, 2100
ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)


class InvalidRequestError(ValueError):
    """The request itself is wrong: a client's mistake, which the HTTP edge answers with 400.
    Any other exception inside Muse is a bug: a logged 500."""


class IngestError(ValueError):
    """Bad input, located: ``file:line: message``."""

    def __init__(self, path: Path | str, line: int | None, message: str):
        self.path, self.line = str(path), line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


NUMBER_WORDS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
)
SPELLINGS = {
    **{w: str(n) for n, w in enumerate(NUMBER_WORDS)},
    "street": "st",
    "saint": "st",
    "mount": "mt",
    "doctor": "dr",
    "mister": "mr",
    "versus": "vs",
}


def metadata_entries(value) -> list:
    """An item's metadata value as the entries it holds: a list's (in order), or a text value
    alone; [] for a number, a flag or nothing."""
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value] if isinstance(value, str) else []


def bare_title(text: str) -> str:
    """A title without its year or year range in brackets at the end, trimmed:
    ``"Arrival, The (1996)"`` -> ``"Arrival, The"``; ``"Band of Brothers (2001-)"`` -> ``"Band of Brothers"``."""
    return re.sub(r"\s*\(\d{4}(?:[-–]\d{0,4})?\)\s*$", "", text.strip())


def normalize_title(text: str) -> str:
    """A title or a span of a message as compared: lower case, no year in brackets, a trailing
    ", The" moved to the front and leading articles dropped, punctuation gone, spaces collapsed,
    ``SPELLINGS`` in one form. ``"Thing, The (1982)"`` -> ``"thing"``; ``"The Shining"`` -> ``"shining"``."""
    text = bare_title(text)
    text = re.sub(r"^(.*), (the|a|an|les|la|le|il|el|das|der|die)$", r"\2 \1", text, flags=re.IGNORECASE)
    text = re.sub(r"[^\w\s]", " ", text.lower().replace("&", " and ").replace("'", ""))
    words = [SPELLINGS.get(w, w) for w in text.split()]
    while len(words) > 1 and words[0] in ("the", "a", "an"):
        words = words[1:]
    return " ".join(words)


@dataclass(frozen=True)
class Item:
    id: str
    title: str
    text: str = ""
    categories: tuple[str, ...] = ()
    year: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)

    def document(self) -> str:
        """The text that is embedded for the item's content vector."""
        parts = [self.title]
        if self.categories:
            parts.append(", ".join(self.categories))
        if self.text and self.text != self.title:
            parts.append(self.text)
        return ". ".join(parts)


@dataclass(frozen=True)
class Interaction:
    user_id: str
    item_id: str
    timestamp: float  # seconds since the epoch, UTC
    kind: str = "rating"
    value: float | None = None
    key: str = ""  # idempotency key; derived from the content when empty
    impression_id: str | None = None  # the impression this event answers, when it answers one

    def idempotency_key(self) -> str:
        if self.key:
            return self.key
        return f"{self.user_id}|{self.item_id}|{self.timestamp!r}|{self.kind}|{self.value!r}"


@dataclass(frozen=True)
class Impression:
    """What Muse showed one user once, as the event store logged it.

    - ``item_ids``: the items shown, in display order; ``scores``: their scores, same order;
    - ``model``: what ranked them (an adapter name, or "retrieval"): the A/B arm;
    - ``created_at``: seconds since the epoch, UTC;
    - ``candidates``: everything the ranker chose from, in retrieval order (empty for
      impressions logged before candidates were kept);
    - ``texts``: per shown item id, ``{"explanation" | "draft": {"prompt": [...], "text": ...}}``,
      so a rating of a text can become training data.
    """

    id: str
    user_id: str
    item_ids: tuple[str, ...]
    scores: tuple[float, ...]
    model: str
    created_at: float
    candidates: tuple[str, ...] = ()
    texts: dict[str, dict] = field(default_factory=dict)

    def shown_text(self, item_id: str, kind: str) -> dict | None:
        """The ``{"prompt", "text"}`` of the ``kind`` ("explanation" or "draft") shown with
        ``item_id``, or None when none was logged."""
        return self.texts.get(item_id, {}).get(kind)


@dataclass(frozen=True)
class FeedbackPolarity:
    """What each event kind says about its item, as data: the one table that the history
    (``in_history``), the turned-down set (``turned_down``) and the opinion of an impression
    (``reaction``: training data, the A/B report) read. After Gorse's positive and read feedback
    types, which are configuration, not code.

    - ``positive`` / ``negative``: kinds that are an opinion for / against the item whatever
      their value (``reaction``);
    - ``turns_down``: the negative kinds strong enough that Muse stops showing the item (a skip
      is not: a skipped item may come back); ``clears_down``: kinds that undo that;
    - ``outside_history``: kinds that never put an item in the history: no opinion of it, one
      against it, or an opinion of Muse's text about it (a liked pitch is not a watched film);
    - ratings (``rating``): ``positive_rating`` and up is for, ``negative_rating`` and down is
      against and turns down, below ``history_rating`` out of the history; any other rating
      clears a turned-down item;
    - dwell (``dwell``, seconds): ``engaged_dwell_s`` and up is for.
    """

    positive: tuple[str, ...] = ("click", "like")
    negative: tuple[str, ...] = ("skip", "dislike")
    turns_down: tuple[str, ...] = ("dislike",)
    clears_down: tuple[str, ...] = ("like", "click")
    outside_history: tuple[str, ...] = ("dislike", "skip", "impression", *TEXT_RATING_KINDS)
    positive_rating: float = 4.0
    negative_rating: float = 2.0
    # A rating of exactly 2 is in the history and also turned down: on MovieLens a low rating
    # still follows a viewing, and dropping such items from the history lost N@10
    # (docs/negative_feedback_probe.py).
    history_rating: float = 2.0
    engaged_dwell_s: float = 30.0

    def reaction(self, event: Interaction) -> str | None:
        """ "pos", "neg" or None (no opinion about the item) for one event."""
        value = event.value
        if event.kind in self.positive:
            return "pos"
        if event.kind in self.negative:
            return "neg"
        if event.kind == "rating":
            if (value or 0) >= self.positive_rating:
                return "pos"
            if (value if value is not None else 5) <= self.negative_rating:
                return "neg"
        if event.kind == "dwell" and (value or 0) >= self.engaged_dwell_s:
            return "pos"
        return None

    def in_history(self, event: Interaction) -> bool:
        """Whether ``event`` puts its item in the user's history."""
        if event.kind in self.outside_history:
            return False
        return not (event.kind == "rating" and event.value is not None and event.value < self.history_rating)

    def turns_item_down(self, event: Interaction) -> bool | None:
        """True: ``event`` turns its item down; False: it undoes that; None: neither."""
        if event.kind in self.turns_down:
            return True
        if event.kind == "rating" and event.value is not None:
            return event.value <= self.negative_rating
        if event.kind in self.clears_down or event.kind == "rating":
            return False
        return None


POLARITY = FeedbackPolarity()


def in_history(event: Interaction) -> bool:
    """Whether ``event`` puts its item in the user's history, what retrieval conditions on
    (``POLARITY.in_history``): any kind outside ``outside_history``, except a rating below
    ``history_rating``. Either way a turned-down item is never recommended to that user."""
    return POLARITY.in_history(event)


# What an explanation may say of an item in the user's stored history, by the kinds of their
# events on it, strongest first: a view or a rating means they watched it; a like (a thumbs-up,
# a film marked when they joined) that they said they liked it; a click or a dwell on its page
# that they looked at it. An item with none of these kinds is not in the history.
CITED_AS = (("watched", ("view", "rating")), ("liked", ("like",)), ("looked at", ("click", "dwell")))


def cited_as(events: Iterable[Interaction]) -> dict[str, str]:
    """How each item of one user's history (``in_history``) may be cited: item id -> the first
    verb of ``CITED_AS`` whose kinds the user's events on it include (a kind the table does not
    name claims the least: "looked at")."""
    kinds: dict[str, set[str]] = {}
    for e in events:
        if in_history(e):
            kinds.setdefault(e.item_id, set()).add(e.kind)
    return {
        item: next((verb for verb, of in CITED_AS if found & set(of)), "looked at") for item, found in kinds.items()
    }


def reaction(event: Interaction) -> str | None:
    """ "pos" (engaged), "neg" (turned down) or None (no opinion about the item) for one event
    answering an impression (``POLARITY.reaction``): what training data and the A/B report both
    count."""
    return POLARITY.reaction(event)


def turned_down(events: Iterable[Interaction]) -> list[str]:
    """The items whose latest opinion in ``events`` (one user's) turns them down
    (``POLARITY.turns_item_down``: a dislike or a rating of ``negative_rating`` or less, not
    followed by a like, a click or a higher rating). Muse never shows these to that user again
    and steers retrieval away from them."""
    latest: dict[str, bool] = {}
    for e in sorted(events, key=lambda e: e.timestamp):
        down = POLARITY.turns_item_down(e)
        if down is not None:
            latest[e.item_id] = down
    return [i for i, down in latest.items() if down]


@dataclass
class Dataset:
    items: list[Item]
    interactions: list[Interaction]
    source: str


# ---------------------------------------------------------------- field parsers


def parse_id(value: Any, what: str, path: Path, line: int) -> str:
    text = str(value).strip() if value is not None else ""
    if not _ID.match(text):
        raise IngestError(path, line, f"bad {what} {value!r}: ids are 1-128 letters, digits, _.:@-")
    return text


def parse_timestamp(value: Any, path: Path, line: int) -> float:
    """Epoch seconds (int/float or their string) or an ISO-8601 string."""
    if isinstance(value, bool) or value is None or value == "":
        raise IngestError(path, line, f"missing or bad timestamp {value!r}")
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise IngestError(path, line, f"unparsable timestamp {value!r}: use epoch seconds or ISO-8601") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _parse_year(value: Any, path: Path, line: int) -> int | None:
    if value in (None, ""):
        return None
    try:
        year = int(value)
    except (TypeError, ValueError):
        raise IngestError(path, line, f"bad year {value!r}: expected an integer") from None
    if not YEAR_MIN <= year <= YEAR_MAX:
        raise IngestError(path, line, f"year {year} is out of range {YEAR_MIN}-{YEAR_MAX}")
    return year


def _parse_value(value: Any, path: Path, line: int) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise IngestError(path, line, f"bad value {value!r}: expected a number") from None


def _categories(value: Any) -> tuple[str, ...]:
    if value in (None, ""):
        return ()
    parts = value if isinstance(value, list) else re.split(r"[|,]", str(value))
    return tuple(p.strip() for p in parts if str(p).strip())


# ---------------------------------------------------------------- generic rows


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) from a JSONL or CSV file."""
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            for number, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw)
                except json.JSONDecodeError as e:
                    raise IngestError(path, number, f"malformed JSON: {e.msg}") from None
                if not isinstance(record, dict):
                    raise IngestError(path, number, "each line must be a JSON object")
                yield number, record
    elif path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            for record in reader:
                yield reader.line_num, record
    else:
        raise IngestError(path, None, "unsupported file type: expected .jsonl or .csv")


def _require(record: dict[str, Any], names: tuple[str, ...], path: Path, line: int) -> None:
    missing = [n for n in names if record.get(n) in (None, "")]
    if missing:
        raise IngestError(path, line, f"missing column(s): {', '.join(missing)}")


def _dedupe_items(located: list[tuple[Item, Path, int]]) -> list[Item]:
    """One item per id; the same id with different data is an error naming both lines."""
    seen: dict[str, tuple[Item, Path, int]] = {}
    for item, path, line in located:
        first = seen.get(item.id)
        if first is None:
            seen[item.id] = (item, path, line)
        elif first[0] != item:
            raise IngestError(path, line, f"item {item.id!r} conflicts with its earlier row at line {first[2]}")
    return [item for item, _, _ in seen.values()]


def load_items(path: Path | str) -> list[Item]:
    path = Path(path)
    located = []
    for line, r in _rows(path):
        _require(r, ("id", "title"), path, line)
        metadata = r.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise IngestError(path, line, "metadata must be an object")
        item = Item(
            id=parse_id(r["id"], "item id", path, line),
            title=str(r["title"]).strip(),
            text=str(r.get("text") or r.get("description") or "").strip(),
            categories=_categories(r.get("categories", r.get("tags"))),
            year=_parse_year(r.get("year"), path, line),
            metadata=metadata,
        )
        located.append((item, path, line))
    return _dedupe_items(located)


def load_interactions(path: Path | str) -> list[Interaction]:
    path = Path(path)
    out = []
    for line, r in _rows(path):
        _require(r, ("user_id", "item_id", "timestamp"), path, line)
        kind = str(r.get("kind") or "rating").strip()
        if kind not in KINDS:
            raise IngestError(path, line, f"unknown kind {kind!r}: expected one of {KINDS}")
        out.append(
            Interaction(
                user_id=parse_id(r["user_id"], "user id", path, line),
                item_id=parse_id(r["item_id"], "item id", path, line),
                timestamp=parse_timestamp(r["timestamp"], path, line),
                kind=kind,
                value=_parse_value(r.get("value"), path, line),
                key=str(r.get("key") or ""),
            )
        )
    return out


def load_file(path: Path | str) -> Dataset:
    """One items or interactions file, told apart by its first record's fields."""
    path = Path(path)
    if not path.is_file():
        raise IngestError(path, None, "no such file")
    first = next(_rows(path), None)
    if first is None:
        raise IngestError(path, None, "the file holds no records")
    line, record = first
    if "user_id" in record:
        return Dataset([], load_interactions(path), f"file:{path}")
    if "id" in record and "title" in record:
        return Dataset(load_items(path), [], f"file:{path}")
    raise IngestError(path, line, "neither items (id, title, ...) nor interactions (user_id, item_id, timestamp, ...)")


# ---------------------------------------------------------------- MovieLens


def _csv_records(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        absent = [c for c in columns if c not in (reader.fieldnames or [])]
        if absent:
            raise IngestError(path, 1, f"missing column(s): {', '.join(absent)}")
        for record in reader:
            _require(record, columns, path, reader.line_num)
            yield reader.line_num, record


def _title_and_year(raw: str) -> tuple[str, int | None]:
    match = _YEAR_IN_TITLE.search(raw)
    if not match:
        return raw.strip(), None
    return raw[: match.start()].strip(), int(match.group(1))


def load_movielens_latest(folder: Path) -> Dataset:
    movies, ratings = folder / "movies.csv", folder / "ratings.csv"
    tags: dict[str, list[str]] = {}
    if (folder / "tags.csv").exists():
        for line, r in _csv_records(folder / "tags.csv", ("userId", "movieId", "tag")):
            movie = parse_id(r["movieId"], "movie id", folder / "tags.csv", line)
            tag = r["tag"].strip().lower()
            if tag not in tags.setdefault(movie, []):
                tags[movie].append(tag)
    located = []
    for line, r in _csv_records(movies, ("movieId", "title", "genres")):
        movie = parse_id(r["movieId"], "movie id", movies, line)
        title, year = _title_and_year(r["title"])
        genres = tuple(g for g in r["genres"].split("|") if g and g != "(no genres listed)")
        text = f"Tags: {', '.join(tags[movie][:10])}." if movie in tags else ""
        located.append((Item(movie, title, text, genres, year), movies, line))
    items = _dedupe_items(located)
    interactions = [
        Interaction(
            user_id=parse_id(r["userId"], "user id", ratings, line),
            item_id=parse_id(r["movieId"], "movie id", ratings, line),
            timestamp=parse_timestamp(r["timestamp"], ratings, line),
            kind="rating",
            value=_parse_value(r["rating"], ratings, line),
        )
        for line, r in _csv_records(ratings, ("userId", "movieId", "rating", "timestamp"))
    ]
    return Dataset(items, interactions, f"movielens-latest:{folder}")


def load_movielens_100k(folder: Path) -> Dataset:
    data, item_file = folder / "u.data", folder / "u.item"
    located = []
    with item_file.open(encoding="latin-1") as f:
        for line, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            fields = raw.rstrip("\n").split("|")
            if len(fields) < 5 + len(ML100K_GENRES):
                raise IngestError(item_file, line, f"expected 24 '|' fields, got {len(fields)}")
            flags = fields[5 : 5 + len(ML100K_GENRES)]
            genres = tuple(g for g, flag in zip(ML100K_GENRES, flags) if flag == "1")
            title, year = _title_and_year(fields[1])
            item = Item(parse_id(fields[0], "item id", item_file, line), title, "", genres, year)
            located.append((item, item_file, line))
    interactions = []
    with data.open(encoding="latin-1") as f:
        for line, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            fields = raw.split()
            if len(fields) != 4:
                raise IngestError(data, line, f"expected 4 fields (user item rating ts), got {len(fields)}")
            user, item, rating, ts = fields
            interactions.append(
                Interaction(
                    parse_id(user, "user id", data, line),
                    parse_id(item, "item id", data, line),
                    parse_timestamp(ts, data, line),
                    "rating",
                    _parse_value(rating, data, line),
                )
            )
    return Dataset(_dedupe_items(located), interactions, f"movielens-100k:{folder}")


# ---------------------------------------------------------------- entry point


def _first_existing(folder: Path, names: tuple[str, ...]) -> Path | None:
    return next((folder / n for n in names if (folder / n).exists()), None)


def load_dataset(path: Path | str) -> Dataset:
    """Read a folder in any supported layout, detected from the files it holds."""
    folder = Path(path)
    if not folder.is_dir():
        raise IngestError(folder, None, "not a folder (expected a dataset folder)")
    if (folder / "movies.csv").exists() and (folder / "ratings.csv").exists():
        dataset = load_movielens_latest(folder)
    elif (folder / "u.data").exists() and (folder / "u.item").exists():
        dataset = load_movielens_100k(folder)
    else:
        items_file = _first_existing(folder, ("items.jsonl", "items.csv"))
        events_file = _first_existing(folder, ("interactions.jsonl", "interactions.csv"))
        if items_file is None:
            raise IngestError(
                folder,
                None,
                "no known layout: expected movies.csv + ratings.csv (ml-latest), "
                "u.data + u.item (ml-100k) or items.jsonl/.csv [+ interactions.jsonl/.csv]",
            )
        interactions = load_interactions(events_file) if events_file else []
        dataset = Dataset(load_items(items_file), interactions, f"generic:{folder}")
    check_references(dataset)
    return dataset


def check_references(dataset: Dataset) -> None:
    """Every interaction must name a catalog item."""
    known = {item.id for item in dataset.items}
    for event in dataset.interactions:
        if event.item_id not in known:
            raise IngestError(
                dataset.source,
                None,
                f"interaction of user {event.user_id!r} names unknown item {event.item_id!r}",
            )

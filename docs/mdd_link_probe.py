"""Issue 23 probe: how well the conversation reader links the films of MDD task-2 requests to
ml-latest-small (docs/chat.md). Run from the repository root beside ../shared:
`python docs/mdd_link_probe.py`."""

import csv
import random
import re
import time
from pathlib import Path

from agent.catalog import Item
from agent.pipeline.reader import ConversationReader, Vocabulary, normalize_title

SHARED = Path("../shared/data")
LIKED = [
    re.compile(r"(?:I liked|I loved|I like|I love)\s+(.*?)\.\s"),
    re.compile(r"(.*?)\s+are (?:movies|films) I (?:really )?(?:liked|loved|like|love|enjoyed)"),
]


def main() -> None:
    items = []
    with (SHARED / "ml-latest-small" / "movies.csv").open() as f:
        for r in csv.DictReader(f):
            m = re.search(r"\((\d{4})\)\s*$", r["title"])
            genres = tuple(r["genres"].split("|"))
            items.append(Item(r["movieId"], r["title"].strip(), categories=genres, year=int(m[1]) if m else None))
    reader = ConversationReader(Vocabulary(items), lambda ids: [])
    known = {normalize_title(i.title) for i in items}
    lines = (SHARED / "mdd" / "task2_recs_dev.txt").read_text().splitlines()
    random.seed(0)
    tp = fp = fn = liked = 0
    times = []
    for line in random.sample([line.split("\t")[0][2:] for line in lines], 300):
        m = next((p.match(line) for p in LIKED if p.match(line)), None)
        if not m:
            continue
        gold = {normalize_title(g) for g in re.split(r",\s*(?:and\s+)?|\s+and\s+", m[1]) if g.strip()}
        gold &= known  # only titles ml-latest-small has
        started = time.perf_counter()
        state = reader.read([line])
        times.append(time.perf_counter() - started)
        got = {normalize_title(x.title) for x in state.mentions}
        tp, fp, fn = tp + len(got & gold), fp + len(got - gold), fn + len(gold - got)
        liked += sum(1 for x in state.mentions if normalize_title(x.title) in gold and x.sentiment == "liked")
    times.sort()
    print(
        f"requests {len(times)}  gold titles {tp + fn}  precision {tp / (tp + fp):.3f}  recall {tp / (tp + fn):.3f}"
        f"  liked of found {liked / max(tp, 1):.3f}  read p50 {times[len(times) // 2] * 1000:.1f} ms"
        f"  p95 {times[int(len(times) * 0.95)] * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()

"""Issue 23 probe: what a soft preference does to the picks at each boost. The demo catalog is
ingested and indexed into a temporary folder; each generated ``soft`` conversation ("A drama,
ideally from the 90s.") goes through the chat's path in-process (``read_turns`` -> ``build_ask``
-> ``MuseAgent.plan``, a new user, no LLM) with ``preferences.PREFERENCE_BOOST`` set to each
value, and as a hard constraint. Prints, per setting, the share of the top-5 picks that meet the
preference, the share that meet the hard part (must stay 1.0), and the mean number of picks.

    .venv/bin/python docs/soft_preference_probe.py
"""

import statistics
import tempfile
from pathlib import Path

from agent.catalog import load_file
from agent.config import Settings
from agent.evaluation import conversations as gen
from agent.indexing import build_index, load_retriever
from agent.pipeline import preferences
from agent.pipeline.chat import build_ask, read_turns
from agent.pipeline.recommender import MuseAgent
from agent.store import SQLiteStore

DEMO = Path(__file__).resolve().parents[1] / "agent" / "data"


def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(data_dir=Path(home))
        store = SQLiteStore(Path(home) / "muse.db")
        store.upsert_items(load_file(DEMO / "demo_items.jsonl").items)
        store.add_events(load_file(DEMO / "demo_interactions.jsonl").interactions)
        build_index(store, settings)
        agent = MuseAgent(settings, store, load_retriever(settings), None)
        items = {it.id: it for it in store.items()}
        convs = [c for c in gen.load(gen.DEMO_FILE) if c.kind == "soft"]
        print(f"{len(convs)} soft conversations of the demo (train and dev), top 5, a new user")
        for setting in (0.0, 0.5, 1.0, 2.0, "hard"):
            meets, hard, counts = [], [], []
            for conv in convs:
                ask, *_ = build_ask(read_turns(conv.messages), "probe-new-user", 5, agent.reader)
                wanted = conv.constraints("preferences")
                if setting == "hard":
                    for name in ("year_min", "year_max"):
                        setattr(ask.constraints, name, getattr(wanted, name) or getattr(ask.constraints, name))
                    ask.filters.year_min, ask.filters.year_max = ask.constraints.year_min, ask.constraints.year_max
                    ask.constraints.values |= wanted.values
                    ask.constraints.ranges |= wanted.ranges
                    ask.preferences = None
                else:
                    preferences.PREFERENCE_BOOST = setting
                plan = agent.plan(ask)
                picks = [items[it.id] for it in plan.items]
                counts.append(len(picks))
                meets += [wanted.admits(it) for it in picks]
                hard += [conv.constraints().admits(it) for it in picks]
            label = "as a hard constraint" if setting == "hard" else f"boost {setting}"
            print(
                f"  {label:<22} picks meeting the preference {statistics.mean(meets):.3f}, "
                f"the hard part {statistics.mean(hard):.3f}, picks per answer {statistics.mean(counts):.2f}"
            )
        store.close()


if __name__ == "__main__":
    main()

"""`muse eval --stage texts` (agent/evaluation/text_eval.py) on the demo store, with an engine that
writes a known text for each way: invented words when decoding is free, a phrase of
the pick's facts when the job carries them. The table must tell the two apart."""

from __future__ import annotations

import re

from agent.llm.engine import TextResult, fact_words


class ScriptedEngine:
    """Free decoding writes "a zorblax of quimple vantroos." (no fact has them); a job with
    ``spans`` gets the first three words of its first fact."""

    def __init__(self):
        self.adapters: dict = {}

    def complete(self, jobs, deadline, cancel=None):
        for n, job in enumerate(jobs):
            if job.spans:
                words = [w for w, _ in fact_words(job.spans)[0][:3]]
                text = " " + " ".join([words[0][:1].lower() + words[0][1:], *words[1:]]) + "."
            else:
                text = " about a zorblax of quimple vantroos."
            yield n, TextResult(text, True, 10, 5)


def test_each_way_is_measured_on_the_same_picks(demo_data):
    from agent.config import Settings
    from agent.evaluation.text_eval import WAYS, run_text_eval
    from agent.indexing import load_retriever
    from agent.pipeline.recommender import MuseAgent
    from agent.store import SQLiteStore

    settings = Settings(data_dir=demo_data)
    store = SQLiteStore(demo_data / "muse.db")
    engine = ScriptedEngine()
    agent = MuseAgent(settings, store, load_retriever(settings), engine)
    report = run_text_eval(agent, engine, answers=4, k=3, seed=1)
    free, facts = (report["ways"][w] for w in WAYS)
    assert free["texts"] == facts["texts"] > 0  # the same jobs for both ways
    assert free["unsupported_word_rate"] == 1.0 and free["texts_with_unsupported_share"] == 1.0  # no fact has them
    assert free["refused"] == {"unsupported": free["texts"]} and free["shown"] == 0
    assert facts["unsupported_word_rate"] == 0.0 and facts["texts_with_unsupported_share"] == 0.0
    assert facts["shown"] + sum(facts["refused"].values()) == facts["texts"]
    assert len(report["samples"]) == free["texts"]
    row = report["samples"][0]
    assert row["free"].startswith("(refused, unsupported)") and row["template"].endswith(".")
    assert re.search(r"\w", row["facts' phrases"])
    store.close()

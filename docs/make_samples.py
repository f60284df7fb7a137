"""Sample answers for the README: each pick's explanation and draft as Muse serves them, next to
the template texts for the same pick (what a degraded answer shows).

    MUSE_DATA_DIR=.muse python docs/make_samples.py --users demo-user-01 demo-user-07 demo-user-12 demo-user-23 --k 5

It runs the service's own request path in-process (retrieval, picks, one batched generation)
against the engine the settings name (a vLLM server started for the run, or MUSE_LLM_URL), and
prints a Markdown table.
"""

from __future__ import annotations

import argparse


def main() -> None:
    from agent.config import Settings
    from agent.indexing import load_retriever
    from agent.llm.session import open_engine
    from agent.pipeline.generation import template_draft, template_explanation
    from agent.pipeline.recommender import Ask, MuseAgent
    from agent.store import SQLiteStore

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", nargs="+", required=True)
    parser.add_argument("--k", type=int, default=5)
    args = parser.parse_args()
    settings = Settings()
    store = SQLiteStore(settings.db_path)
    with open_engine(settings) as engine:
        agent = MuseAgent(settings, store, load_retriever(settings), engine)
        print("| user | pick | Muse: explanation / draft (source) | template: explanation / draft |")
        print("| --- | --- | --- | --- |")
        for user in args.users:
            plan = agent.plan(Ask(user, args.k))
            for _ in agent.texts(plan):
                pass
            for ev, texts in zip(plan.texts.evidence, plan.texts.texts):
                muse = (
                    f"{texts.explanation} ({texts.outcomes['explanation']})<br>"
                    f"{texts.draft} ({texts.outcomes['draft']})"
                )
                print(f"| {user} | {ev.item.title} | {muse} | {template_explanation(ev)}<br>{template_draft(ev)} |")


if __name__ == "__main__":
    main()

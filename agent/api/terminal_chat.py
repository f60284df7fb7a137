"""``muse chat --user ID``: a terminal conversation through the OpenAI-compatible endpoint, so
the REPL exercises exactly what any OpenAI client gets. Without ``--url`` the service is
started in-process for the length of the session."""

from __future__ import annotations

import sys
from contextlib import ExitStack


def repl(user: str, url: str | None, k: int = 5) -> int:
    from openai import OpenAI

    with ExitStack() as stack:
        if url is None:
            from agent.api.app import create_app
            from agent.api.background_server import BackgroundServer

            print("starting Muse in-process (the LLM server takes a minute on CPU)...", file=sys.stderr)
            url = stack.enter_context(BackgroundServer(create_app())).url
        from agent.config import Settings

        # OpenAI's client sends api_key as 'Authorization: Bearer <key>', which is what Muse reads.
        client = OpenAI(base_url=f"{url.rstrip('/')}/v1", api_key=Settings().api_key or "unused")
        messages: list[dict] = []
        print(f"Muse for user {user}. Ask for something; an empty line ends.", file=sys.stderr)
        while True:
            try:
                text = input("you> ").strip()
            except EOFError:
                break
            if not text:
                break
            messages.append({"role": "user", "content": text})
            reply = ""
            for chunk in client.chat.completions.create(
                model="muse", messages=messages, user=user, stream=True, extra_body={"muse": {"k": k}}
            ):
                delta = chunk.choices[0].delta.content or "" if chunk.choices else ""
                reply += delta
                print(delta, end="", flush=True)
            messages.append({"role": "assistant", "content": reply})
    return 0

"""Does the allocator tuning of the vLLM server (``agent.llm.server.MALLOC_TUNING``) cost speed?

    python docs/malloc_probe.py            # the server as Muse starts it (tuned)
    python docs/malloc_probe.py --glibc    # the same with glibc's own allocator settings

Starts the packaged model's vLLM server as Muse does, sends 48 completions (64 tokens each, 8 at
a time, every prompt distinct so no prefix is shared), and prints the seconds the 48 took (the
server's start is not in the figure). Run each variant as a whole process several times, in
turn, and compare the medians (docs/soak.md has the figures).
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor


def main() -> None:
    import httpx

    from agent.llm import server
    from agent.llm.model_files import ensure_checkpoint
    from agent.llm.vllm_engine import BASE_MODEL_NAME

    if "--glibc" in sys.argv:
        server.MALLOC_TUNING = {}
    config = server.ServerConfig(model_dir=ensure_checkpoint(), port=8177)
    with server.VLLMServer(config) as running:
        prompts = [f"Film {n}: a story about {n % 7} friends and a {n % 5}-day journey. In short," for n in range(48)]

        def one(prompt: str) -> None:
            r = httpx.post(
                f"{running.url}/v1/completions",
                timeout=600,
                json={
                    "model": BASE_MODEL_NAME,
                    "prompt": prompt,
                    "max_tokens": 64,
                    "min_tokens": 64,
                    "temperature": 0,
                },
            )
            r.raise_for_status()

        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, prompts))
        print(f"48 completions: {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()

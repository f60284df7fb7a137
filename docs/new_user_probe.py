"""Issue 25 probe: a new user's first chat answer, the cost that grew with the store (every answer
to a user without history read every event for the onboarding items). Sends ``--requests`` chat
requests, each from a user id never seen before, one at a time, to a running Muse, and prints
the wall-time p50 and p95 of the whole answer (non-streamed). Run against `muse serve` with the
LLM unreachable (``MUSE_LLM_URL=http://127.0.0.1:9``) to time the rest of the path:

    python docs/new_user_probe.py --url http://127.0.0.1:8000 --requests 50
"""

import argparse
import statistics
import time
import uuid

import httpx

ASKS = ["something funny", "a gripping thriller", "I loved Alien. What else?", "hi", "a film from the 90s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--requests", type=int, default=50)
    args = p.parse_args()
    seconds, onboarded = [], 0
    with httpx.Client(base_url=args.url, timeout=120) as client:
        for n in range(args.requests):
            body = {
                "model": "muse",
                "user": f"probe-{uuid.uuid4().hex[:12]}",
                "messages": [{"role": "user", "content": ASKS[n % len(ASKS)]}],
            }
            started = time.perf_counter()
            reply = client.post("/v1/chat/completions", json=body)
            seconds.append(time.perf_counter() - started)
            reply.raise_for_status()
            onboarded += bool(reply.json()["muse"]["onboarding"])
    q = statistics.quantiles(seconds, n=20)
    print(
        f"new-user chat answers: n={len(seconds)}, p50 {statistics.median(seconds):.3f} s, p95 {q[18]:.3f} s, "
        f"with onboarding items {onboarded}"
    )
    for n, ask in enumerate(ASKS):
        mine = seconds[n :: len(ASKS)]
        print(f"  {ask!r}: p50 {statistics.median(mine):.3f} s, max {max(mine):.3f} s (n={len(mine)})")


if __name__ == "__main__":
    main()

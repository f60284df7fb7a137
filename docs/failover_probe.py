"""Two vLLM servers behind one Muse; one is killed during `muse bench agent` (issue 17).

    .venv/bin/python docs/failover_probe.py [--requests 50] [--kill-after 40] [--work /tmp/failover]

Starts two vLLM servers with the packaged model (`muse llm serve`, one CPU thread each on this
2-core machine), a `muse serve --demo` whose ``MUSE_LLM_URL`` lists both (defaults otherwise),
and `muse bench agent --requests N` against it. ``--kill-after`` seconds into the benchmark the
second vLLM server's process group gets SIGKILL. Meanwhile ``/readyz`` is polled every 50 ms to
time how long the health check took to mark the dead server down. Prints one JSON object: the
benchmark's statuses, errors and degraded answers, the vLLM requests each server had finished
before the kill, and the seconds from the kill to the mark.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_http(url: str, seconds: float) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} not ready within {seconds:.0f} s")


def kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants (vLLM runs in a session of its own)."""
    import psutil

    parent = psutil.Process(pid)
    for process in [*parent.children(recursive=True), parent]:
        process.kill()


def finished_requests(url: str) -> float:
    import httpx

    lines = httpx.get(f"{url}/metrics", timeout=10).text.splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("vllm:request_success_total{"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--kill-after", type=float, default=40.0, help="seconds into the benchmark")
    parser.add_argument("--work", type=Path, default=Path("/tmp/failover"))
    args = parser.parse_args()

    import httpx

    muse = [sys.executable, "-m", "agent.cli"]
    args.work.mkdir(parents=True, exist_ok=True)
    base = {**os.environ, "MUSE_LLM_THREADS": "1"}
    ports = (8131, 8132)
    servers = [
        start(
            [*muse, "llm", "serve", "--port", str(port)],
            {**base, "MUSE_DATA_DIR": str(args.work / f"vllm-{n}")},
            args.work / f"vllm-{n}.log",
        )
        for n, port in enumerate(ports)
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    service = None
    try:
        for url in urls:
            wait_http(f"{url}/health", 600)
        env = {**base, "MUSE_DATA_DIR": str(args.work / "muse"), "MUSE_LLM_URL": ",".join(urls), "MUSE_PORT": "8130"}
        service = start([*muse, "serve", "--demo"], env, args.work / "muse.log")
        wait_http("http://127.0.0.1:8130/readyz?require=llm", 900)
        bench = subprocess.Popen(
            [*muse, "bench", "agent", "--url", "http://127.0.0.1:8130", "--requests", str(args.requests)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(args.kill_after)
        before = [finished_requests(url) for url in urls]
        kill_tree(servers[1].pid)
        killed = time.monotonic()
        noticed = None
        while noticed is None and time.monotonic() - killed < 60:
            state = httpx.get("http://127.0.0.1:8130/readyz", timeout=10).json().get("llm_replicas", [])
            if state and not state[1]["up"]:
                noticed = time.monotonic() - killed
            time.sleep(0.05)
        out, _ = bench.communicate(timeout=3600)
        report = json.loads(out)
        print(
            json.dumps(
                {
                    "requests": args.requests,
                    "killed_after_s": args.kill_after,
                    "vllm_requests_finished_before_kill": dict(zip(urls, before)),
                    "seconds_from_kill_to_marked_down": None if noticed is None else round(noticed, 2),
                    "http_status": report["http_status"],
                    "degraded_answers": report["degraded_answers"],
                    "problems": report["problems"],
                    "template_share": report["template_share"],
                    "answer_latency_s": report["latency_s"]["answer"],
                    "wall_s": report["wall_s"],
                    "replicas_after": httpx.get("http://127.0.0.1:8130/readyz", timeout=10).json()["llm_replicas"],
                },
                indent=2,
            )
        )
    finally:
        for process in [service, *servers]:
            if process is not None and process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)  # muse stops the vLLM it started
                process.wait(60)


if __name__ == "__main__":
    main()

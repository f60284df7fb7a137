"""Several vLLM servers behind one engine (``MUSE_LLM_URL=http://a:8100,http://b:8100``).

Each call (a ranking batch, a text batch) goes to the next replica that is up, round robin, so
load spreads across servers. A replica is marked down when a call to it finds it unreachable
(``EngineUnavailable``: connection refused or dropped, 502/503/504), and the same call is tried
again on the next replica, so a server that dies costs no answer; texts that had already
arrived are kept and only the unfinished ones are sent again. A thread asks every replica's
``GET /health`` each ``interval`` seconds: a replica that fails is marked down before any
request finds out, and one that answers 200 again is used again.

Timeouts are not failovers: past the caller's deadline a retry could not arrive in time.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from agent.llm.engine import EngineUnavailable, Message, TextJob, TextResult
from agent.llm.vllm_engine import VLLMEngine

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Replica:
    """One vLLM server and what the health check last saw of it."""

    engine: VLLMEngine
    up: bool = True
    since: float = field(default_factory=time.monotonic)  # when ``up`` last changed
    reason: str = ""

    @property
    def url(self) -> str:
        return self.engine.url


class VLLMReplicas:
    """The ``Engine`` interface over several vLLM servers serving the same model and adapters.

    ``urls``: base URLs (http://host:port); ``interval``: seconds between health checks (0 = no
    health thread: replicas are marked down only by failed calls, and never back up).
    Raises ``ValueError`` for an empty list; calls raise ``EngineUnavailable`` when every
    replica is down.
    """

    def __init__(self, urls: Sequence[str], adapters: dict[str, Path] | None = None, interval: float = 2.0):
        if not urls:
            raise ValueError("give at least one vLLM server URL")
        self.adapters = dict(adapters or {})
        self.replicas = [Replica(VLLMEngine(url, self.adapters)) for url in urls]  # each copies the list
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        if interval > 0:
            self._thread = threading.Thread(target=self._watch, args=(interval,), name="vllm-health", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------ health

    def _mark(self, replica: Replica, up: bool, reason: str = "") -> None:
        with self._lock:
            if replica.up == up:
                return
            replica.up, replica.since, replica.reason = up, time.monotonic(), reason
        if up:
            logger.warning("vLLM replica %s is back", replica.url)
        else:
            logger.warning("vLLM replica %s is down: %s", replica.url, reason)

    def check(self) -> None:
        """Ask every replica's ``/health`` once and mark each up or down by the answer."""
        for replica in self.replicas:
            try:
                status = replica.engine.client.get("/health", timeout=2.0).status_code
                self._mark(replica, status == 200, f"/health answered {status}")
            except Exception as e:  # noqa: BLE001 - any failure to answer means down
                self._mark(replica, False, f"/health: {e!r}"[:300])

    def _watch(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.check()

    def status(self) -> list[dict]:
        """Per replica: ``url``, ``up``, ``for_s`` (seconds in that state) and ``reason``."""
        now = time.monotonic()
        return [
            {"url": r.url, "up": r.up, "for_s": round(now - r.since, 1), "reason": r.reason} for r in self.replicas
        ]

    # ------------------------------------------------------------ routing

    def _pick(self, tried: set[int]) -> int:
        """The next replica (index) that is up and not yet tried for this call."""
        n = len(self.replicas)
        with self._lock:
            start = next(self._turn)
            for k in range(n):
                i = (start + k) % n
                if i not in tried and self.replicas[i].up:
                    return i
        down = "; ".join(f"{r.url}: {r.reason or 'failed'}" for r in self.replicas)
        raise EngineUnavailable(f"no vLLM replica is up ({down})")

    def _call(self, do: Callable[[VLLMEngine], T]) -> T:
        tried: set[int] = set()
        while True:
            i = self._pick(tried)
            try:
                return do(self.replicas[i].engine)
            except EngineUnavailable as e:
                self._mark(self.replicas[i], False, str(e)[:300])
                tried.add(i)

    def label_logprobs(
        self,
        conversations: Sequence[list[Message]],
        labels: Sequence[str],
        adapter: str | None = None,
        timeout: float | None = None,
    ) -> list[list[float]]:
        return self._call(lambda engine: engine.label_logprobs(conversations, labels, adapter, timeout))

    def generate(
        self,
        conversations: Sequence[list[Message]],
        max_tokens: int = 64,
        adapter: str | None = None,
        temperature: float = 0.0,
        json_schema: dict | None = None,
        timeout: float | None = None,
    ) -> list[str]:
        return self._call(
            lambda engine: engine.generate(conversations, max_tokens, adapter, temperature, json_schema, timeout)
        )

    def complete(
        self,
        jobs: Sequence[TextJob],
        deadline: float,
        cancel: threading.Event | None = None,
    ) -> Iterator[tuple[int, TextResult]]:
        """As ``VLLMEngine.complete``; if the replica dies midway, the jobs not yet answered go
        to the next replica under the same deadline."""
        done: set[int] = set()
        tried: set[int] = set()
        while len(done) < len(jobs):
            i = self._pick(tried)
            left = [n for n in range(len(jobs)) if n not in done]
            try:
                for k, result in self.replicas[i].engine.complete([jobs[n] for n in left], deadline, cancel):
                    done.add(left[k])
                    yield left[k], result
                return
            except EngineUnavailable as e:
                self._mark(self.replicas[i], False, str(e)[:300])
                tried.add(i)

    def load_adapter(self, name: str, path: Path) -> None:
        """Load the adapter into every replica (each server must be able to read ``path``); it
        joins this engine's allow-list once all have it. Raises ``EngineError`` from the first
        replica that fails (those before it keep the adapter)."""
        if name in self.adapters:
            raise ValueError(f"adapter {name!r} is already loaded")
        for replica in self.replicas:
            replica.engine.load_adapter(name, path)
        self.adapters[name] = Path(path)

    def models(self) -> list[str]:
        return self._call(lambda engine: engine.models())

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for replica in self.replicas:
            replica.engine.close()

"""Start and stop a vLLM OpenAI-compatible server for Muse (``muse llm serve``).

The base checkpoint is served as model ``base`` and every registered LoRA adapter as a model
of its own name. Flags that make vLLM start on a CPU machine (design.md) are the defaults;
on a GPU machine pass ``--gpu-memory-utilization 0.9`` or any vLLM flag (tensor parallel,
...) through ``extra_args``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Self

from agent.llm.engine import EngineError, lora_rank
from agent.llm.hardware import resolve_dtype, resolve_threads
from agent.llm.vllm_engine import BASE_MODEL_NAME

logger = logging.getLogger(__name__)


@dataclass
class ServerConfig:
    model_dir: Path
    adapters: dict[str, Path] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 8100
    dtype: str = "auto"  # resolved for this machine (agent/llm/hardware.py)
    threads: int = 0  # CPU threads of the engine; 0 = every usable core
    max_model_len: int = 2048
    gpu_memory_utilization: float = 0.5
    kv_cache_gib: int = 2  # VLLM_CPU_KVCACHE_SPACE; vLLM CPU fails at start without it here
    max_lora_rank: int = 16
    extra_args: list[str] = field(default_factory=list)
    startup_timeout: float = 600.0
    log_file: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        # `vllm` the console script looks up the distribution "vllm", absent with vllm-cpu.
        cmd = [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model_dir),
            "--served-model-name",
            BASE_MODEL_NAME,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--dtype",
            resolve_dtype(self.dtype),
            "--max-model-len",
            str(self.max_model_len),
            "--gpu-memory-utilization",
            str(self.gpu_memory_utilization),
        ]
        if self.adapters:
            rank = max([self.max_lora_rank] + [lora_rank(p) for p in self.adapters.values()])
            # One slot more than registered: an adapter promoted while serving is loaded at runtime.
            cmd += [
                "--enable-lora",
                "--max-lora-rank",
                str(rank),
                "--max-loras",
                str(len(self.adapters) + 1),
                "--lora-modules",
                *[f"{n}={p}" for n, p in self.adapters.items()],
            ]
        return cmd + self.extra_args


MALLOC_TUNING = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "1048576", "MALLOC_TRIM_THRESHOLD_": "1048576"}


class VLLMServer:
    """A vLLM server process: ``with VLLMServer(cfg) as server: ...`` starts it, waits until
    it answers, and stops it (the whole process group) on exit."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return self.config.url

    def environment(self) -> dict[str, str]:
        """The server's environment: its KV cache size, runtime LoRA loading, and on a CPU the
        cores its worker binds to (the first ``threads`` usable ones; vLLM's own default
        binds one core and leaves the rest idle on a 2-core machine: prefill ran 1.9x faster
        on both, docs/llm-serving.md)."""
        cfg = self.config
        env = {
            **os.environ,
            "VLLM_CPU_KVCACHE_SPACE": str(cfg.kv_cache_gib),
            "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
        }
        # glibc's allocator, which the CPU build falls back to without the tcmalloc its docs ask
        # for: one arena per thread and a mmap threshold that climbs with the tensors freed made
        # the vLLM processes grow 38% in a 10-minute soak at concurrency 16; with a fixed 1 MiB
        # threshold and two arenas the whole tree grew 5% (docs/soak.md). Set ones are kept.
        for name, value in MALLOC_TUNING.items():
            env.setdefault(name, value)
        if "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
            cores = sorted(os.sched_getaffinity(0))[: resolve_threads(cfg.threads)]
            env["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(map(str, cores))
            env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(max(0, len(os.sched_getaffinity(0)) - len(cores)))
        return env

    def start(self) -> VLLMServer:
        cfg = self.config
        env = self.environment()
        # The child keeps its own copy of the log handle. Its own session, so stop() can take
        # down the engine-core and worker children too.
        with open(cfg.log_file, "ab") if cfg.log_file else nullcontext(subprocess.DEVNULL) as log:
            self.process = subprocess.Popen(
                cfg.command(), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + self.config.startup_timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise EngineError(f"vLLM exited with code {self.process.returncode} while starting{self._log_tail()}")
            try:
                if httpx.get(f"{self.url}/v1/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        self.stop()
        raise EngineError(f"vLLM did not answer within {self.config.startup_timeout:.0f} s{self._log_tail()}")

    def _log_tail(self) -> str:
        log = self.config.log_file
        if log and log.exists():
            return "; log tail:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        return ""

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM the server's process group (API server, engine core, workers), wait up to
        ``grace`` seconds for every member to exit, then SIGKILL what is left."""
        proc, self.process = self.process, None
        if proc is None:
            return
        deadline = time.monotonic() + grace
        _signal_group(proc.pid, signal.SIGTERM)
        while time.monotonic() < deadline and _group_alive(proc.pid):
            proc.poll()  # reap the leader so it does not linger as a zombie
            time.sleep(0.2)
        if _group_alive(proc.pid):
            _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


class Supervisor:
    """Restarts the vLLM server Muse started when its process dies (a crash, an OOM kill), with
    the adapters the engine serves by then, runtime-loaded ones included. While it is down the
    agent answers degraded (``LLMGate``), and after the restart it recovers by itself."""

    def __init__(
        self,
        server: VLLMServer,
        adapters: Callable[[], dict[str, Path]],
        every: float = 5.0,
    ):
        self.server, self.adapters, self.every = server, adapters, every
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="vllm-supervisor", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every + 1)

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.check()
            except EngineError as e:  # it did not come back this time: try again at the next tick
                logger.warning("vLLM restart failed: %s", e)

    def check(self) -> bool:
        """Restart the server if its process has exited; True if it did."""
        process = self.server.process
        if process is None or process.poll() is None or self._stop.is_set():
            return False
        logger.warning("vLLM exited with code %s; restarting it", process.returncode)
        self.server.stop()  # reaps the leader and whatever is left of its process group
        self.server.config = replace(self.server.config, adapters=dict(self.adapters()))
        self.server.start()
        self.restarts += 1
        return True

"""The vLLM supervisor on a stand-in server (a real child process): it leaves a live server
alone, and restarts a dead one with the adapters the engine serves by then."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agent.llm.server import ServerConfig, Supervisor


class StandInServer:
    """VLLMServer's start/stop/process/config, with `python -c` children in place of vLLM."""

    def __init__(self):
        self.config = ServerConfig(Path("model"), {"rank-a": Path("a")})
        self.starts: list[dict] = []
        self.process = None

    def start(self):
        self.starts.append(dict(self.config.adapters))
        self.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        return self

    def stop(self):
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self.process = None


def test_a_dead_server_is_restarted_with_the_adapters_served_now():
    server = StandInServer().start()
    served = {"rank-a": Path("a")}
    supervisor = Supervisor(server, lambda: served)
    try:
        assert supervisor.check() is False  # alive: left alone
        served["rank-b"] = Path("b")  # loaded at runtime after the start
        server.process.kill()
        server.process.wait()
        assert supervisor.check() is True and supervisor.restarts == 1
        assert server.starts == [{"rank-a": Path("a")}, {"rank-a": Path("a"), "rank-b": Path("b")}]
        assert server.process.poll() is None  # running again
    finally:
        server.stop()

"""Run the Muse app with uvicorn on a thread (``muse chat`` without a service, and the tests'
real-HTTP server)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Self


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BackgroundServer:
    def __init__(self, app, port: int | None = None, startup_timeout: float = 900.0):
        import uvicorn

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.startup_timeout = startup_timeout

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the Muse app failed to start (see the log above)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Muse app did not start within {self.startup_timeout:.0f} s")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)

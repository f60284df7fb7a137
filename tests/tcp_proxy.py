"""A TCP forwarder on 127.0.0.1 that a test can cut and restore: a second address for one real
server, so a "replica" can die and come back without restarting what is behind it."""

from __future__ import annotations

import socket
import threading


class TcpProxy:
    """Forwards connections on ``port`` (0 = a free one) to 127.0.0.1:``target``. ``stop()``
    closes the listener and every open connection (clients see resets); ``start()`` listens on
    the same port again. ``accepted`` counts the connections taken; ``requests(line)`` counts
    the HTTP request lines clients sent (a kept-alive connection carries many)."""

    def __init__(self, target: int, port: int = 0):
        self.target, self.port, self.accepted = target, port, 0
        self._sockets: list[socket.socket] = []
        self._sent: list[bytearray] = []  # what each client sent, one buffer per connection
        self._lock = threading.Lock()
        self.start()

    def requests(self, line: bytes) -> int:
        """How many times clients sent ``line`` (e.g. ``b"POST /v1/chat/completions "``)."""
        with self._lock:
            return sum(bytes(b).count(line) for b in self._sent)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._sockets = [listener]
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:  # the server behind is gone
                client.close()
                continue
            sent = bytearray()
            with self._lock:
                self.accepted += 1
                self._sockets += [client, upstream]
                self._sent.append(sent)
            threading.Thread(target=self._pump, args=(client, upstream, sent), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, record: bytearray | None) -> None:
        try:
            while data := source.recv(65536):
                if record is not None:
                    with self._lock:
                        record += data
                sink.sendall(data)
        except OSError:
            pass
        finally:
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass

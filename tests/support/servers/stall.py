"""A TCP server on 127.0.0.1 that accepts connections and never answers: a stalled remote."""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field

__all__ = ["StallServer", "start_stall_server"]


@dataclass
class StallServer:
    """Accepts every connection, reads what is sent, answers nothing; counts connections."""

    port: int
    sock: socket.socket
    accepted: int = 0
    _conns: list[socket.socket] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed by stop()
            with self._lock:
                self.accepted += 1
                self._conns.append(conn)
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while not self._stop.is_set() and conn.recv(65536):
                pass

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.close()


def start_stall_server() -> StallServer:
    """Listen on a free 127.0.0.1 port in a daemon thread of this process."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    server = StallServer(port=sock.getsockname()[1], sock=sock)
    threading.Thread(target=server._serve, daemon=True).start()
    return server

"""A loopback TCP proxy that tests can cut, freeze and restore, to take a real server away from one client.

The machine's PostgreSQL and MariaDB are shared, so tests never stop them; a sink under test
connects through this proxy instead. ``stop()`` makes its server unreachable (connection refused,
established connections reset) while ``start()`` brings it back on the same port. ``blackhole()``
makes it a server that stops answering: connections stay open and new ones are accepted, but
nothing is forwarded either way, as with a frozen server process or a proxy whose backend vanished
(the kernel keeps acknowledging, so only a client-side deadline notices). ``forward()`` resumes.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to a target address while running."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = int(probe.getsockname()[1])
        probe.close()
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._forwarding = threading.Event()
        self._forwarding.set()
        self.accepted = 0
        """Connections accepted so far (a client that reuses its connection adds none)."""

    def start(self) -> TcpProxy:
        """Listen (again) on the proxy port."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Refuse new connections and reset the established ones."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            conn.close()

    def blackhole(self) -> None:
        """Keep every connection open and accept new ones, but forward nothing (not even a close)."""
        self._forwarding.clear()

    def forward(self) -> None:
        """Forward again, on held connections too (what the clients sent meanwhile goes through)."""
        self._forwarding.set()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self.accepted += 1
                self._connections += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        sockets = [a, b]
        try:
            while True:
                if not self._forwarding.wait(1.0):
                    # Blackholed: read nothing, so neither data nor a client's close reaches the server.
                    if a.fileno() == -1 or b.fileno() == -1:
                        return  # stop() closed them meanwhile
                    continue
                readable, _, _ = select.select(sockets, [], [], 1.0)
                for sock in readable:
                    if not self._forwarding.is_set():
                        break
                    data = sock.recv(65536)
                    if not data:
                        return
                    (b if sock is a else a).sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:
                self._connections = [c for c in self._connections if c not in sockets]

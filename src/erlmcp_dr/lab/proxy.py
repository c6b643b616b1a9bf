"""A TCP proxy on loopback, one per network link of the lab, that a test can cut: a partition without root.

`LinkProxy(target_host, target_port)` listens on 127.0.0.1 (a port the kernel picks) and relays every connection to
the target, both directions, each direction on its own two threads (a reader and a writer). `cut()` is a partition
of that link: the connections open now are closed, and new ones are accepted and then held without a byte relayed,
so the client waits until its own timeout, as it would behind a dropped route, instead of being refused at once.
`heal()` relays again. `delay` (seconds, 0 by default, settable at any time) is added latency: every chunk relayed,
either direction, is sent that long after it was read; a slow direction never holds the other, and chunks are not
delayed one after another (a chunk read while another waits is due `delay` after its own read).
Used by benchmarks/watch_partition.py (each observer reaches every etcd member and every checked service through a
proxy of its own, so one observer can be isolated while the others see everything) and by the drill's `partition`
fault (lab/partition.py: a standby region's replication links, cut or slowed).
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from typing import List, Optional, Tuple

BUFFER = 65536


class LinkProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.port: int = self._server.getsockname()[1]
        self._lock = threading.Lock()
        self._open: List[socket.socket] = []
        self._held: List[socket.socket] = []
        self._cut = False
        self._closed = False
        self.delay = 0.0  # seconds added to every chunk relayed (latency), both directions
        self._thread = threading.Thread(target=self._accept, name=f"proxy-{self.port}", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def is_cut(self) -> bool:
        return self._cut

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            for sock in self._open:
                _close(sock)
            self._open.clear()

    def heal(self) -> None:
        with self._lock:
            self._cut = False
            for sock in self._held:
                _close(sock)
            self._held.clear()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self.heal()
        _close(self._server)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                if self._cut:
                    self._held.append(client)  # accepted, never answered: the client times out
                    continue
            upstream = self._connect()
            if upstream is None:
                _close(client)  # the target is down: the client sees the connection closed
                continue
            with self._lock:
                if self._cut:  # cut while this one was connecting: it is closed like the others were
                    _close(client)
                    _close(upstream)
                    continue
                self._open.extend((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                chunks: queue.Queue[Optional[Tuple[float, bytes]]] = queue.Queue()
                threading.Thread(target=self._read, args=(source, chunks), daemon=True).start()
                threading.Thread(target=self._write, args=(chunks, source, sink), daemon=True).start()

    def _connect(self) -> Optional[socket.socket]:
        try:
            return socket.create_connection(self.target, timeout=5)
        except OSError:
            return None

    def _read(self, source: socket.socket, chunks: queue.Queue[Optional[Tuple[float, bytes]]]) -> None:
        """Reads one direction; each chunk goes to its writer with the moment it is due (now + delay)."""
        try:
            source.settimeout(None)
            while True:
                data = source.recv(BUFFER)
                if not data:
                    break
                chunks.put((time.monotonic() + self.delay, data))
        except OSError:
            pass
        finally:
            chunks.put(None)  # the writer closes both sockets once it has sent what was read before

    def _write(self, chunks: queue.Queue[Optional[Tuple[float, bytes]]], source: socket.socket,
               sink: socket.socket) -> None:
        try:
            while True:
                item = chunks.get()
                if item is None:
                    break
                due, data = item
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)  # the latency itself: this chunk is due then
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _close(source)
            _close(sink)
            with self._lock:
                for sock in (source, sink):
                    if sock in self._open:
                        self._open.remove(sock)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass

"""The drill's independent client: what a user of the service sees while a fault is injected and recovered.

Every `interval` seconds (20 ms) it writes through the public name (POST /write of the application the name
resolves to) and reads back the last acknowledged row (GET /read/<id>), logging each attempt with its times on
the drill's monotonic clock, and each acknowledged write's row id and session key. It resolves the public name at
the inventory's authoritative DNS servers, as a client would, again once the answer's TTL has passed (a DNS
cutover reaches it no sooner than a real client), asking them in the inventory's order and falling over to the next
when one refuses or does not answer within DNS_TIMEOUT; each resolution is logged (`PublicName.resolutions`: when,
how long, which server answered, which failed first), so a drill can wait until the client has resolved again after
a fault (a dns_server drill). Without DNS in the inventory it uses one application URL.

After the recovery, `present(...)` asks the database primary and the Redis primary directly which acknowledged
rows and session keys survived: the RPO and the sessions lost (drill_judge.data_loss).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from erlmcp_dr.drill.judge import Attempt

HTTP_TIMEOUT = 2.0  # a request (resolving the name included) that takes longer is a failure: measured, not waited out
# How long the resolver waits for one authoritative server before asking the next. A frozen server (SIGSTOP: its
# socket takes the query, nothing answers) costs this much at every resolution, and a resolution is part of the
# request's HTTP_TIMEOUT: 0.5 s leaves the request itself 1.5 s. The lab's knotd answers on loopback in
# milliseconds (docs/drill.md), so 0.5 s is not a slow answer mistaken for a dead server. (glibc's default is
# `timeout:5`: a client with it would see every resolution fail while the first server is frozen.) A dead server
# (kill -9) refuses at once: the query's UDP socket is connected, so the kernel's ICMP port unreachable arrives as
# ECONNREFUSED, as glibc's resolver sees it (an unconnected socket would wait out the timeout instead).
DNS_TIMEOUT = 0.5


@dataclass
class PublicName:
    """`name` resolved at `servers` ((host, port) authoritative servers); the application listens on `port`.
    `url` instead: a fixed application URL (no DNS in the inventory)."""

    name: Optional[str] = None
    servers: Sequence[Tuple[str, int]] = ()
    port: int = 0
    url: Optional[str] = None
    timeout: float = DNS_TIMEOUT
    _cached: Optional[str] = None
    _expires: float = 0.0
    # Every resolution: {started, ended (time.monotonic), server (host:port that answered, None: none did), failed
    # ([host:port: error] of the servers asked before it)}. Appended by the client's thread.
    resolutions: List[Dict[str, Any]] = field(default_factory=list, repr=False, compare=False)

    def base_url(self) -> str:
        if self.url:
            return self.url.rstrip("/")
        now = time.monotonic()
        if self._cached is None or now >= self._expires:
            address, ttl = self._resolve()
            self._cached, self._expires = f"http://{address}:{self.port}", now + ttl
        return str(self._cached)

    def resolved_since(self, moment: float) -> Optional[Dict[str, Any]]:
        """The first resolution that started at or after `moment` and got an answer, else None."""
        return next((r for r in list(self.resolutions) if r["started"] >= moment and r["server"]), None)

    def _resolve(self) -> Tuple[str, float]:
        started = time.monotonic()
        errors: List[str] = []
        found, server = None, None
        for host, port in self.servers:
            try:
                answer = _query(str(self.name), host, port, self.timeout)
            except Exception as exc:  # the next authoritative server may answer
                errors.append(f"{host}:{port}: {_short(exc)}")
                continue
            found = _address(answer)
            if found is not None:
                server = f"{host}:{port}"
                break
            errors.append(f"{host}:{port}: no A record")
        self.resolutions.append({"started": started, "ended": time.monotonic(), "server": server, "failed": errors})
        if found is None:
            raise OSError(f"{self.name} did not resolve: " + "; ".join(errors))
        return found

    def describe(self) -> str:
        return self.url or f"{self.name} (port {self.port}, resolved at " + ", ".join(
            f"{h}:{p}" for h, p in self.servers) + ")"


class DrillClient:
    def __init__(self, target: PublicName, note: str, interval: float = 0.02, clock: Any = time.monotonic) -> None:
        self.target, self.note, self.interval, self.clock = target, note, interval, clock
        self.attempts: List[Attempt] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="drill-client", daemon=True)
        self._last_id: Optional[int] = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> List[Attempt]:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return list(self.attempts)

    def successes_since(self, moment: float) -> int:
        return sum(1 for a in list(self.attempts) if a.ok and a.started >= moment)

    def _loop(self) -> None:
        next_tick = self.clock()
        while not self._stop.is_set():
            self.attempts.append(self._write())
            if self._last_id is not None:
                self.attempts.append(self._read(self._last_id))
            next_tick += self.interval
            late = self.clock() - next_tick
            if late > 0:  # a slow request: the next tick is now, not a burst of the missed ones
                next_tick += late
            self._stop.wait(max(0.0, next_tick - self.clock()))

    def _write(self) -> Attempt:
        started = self.clock()
        body = json.dumps({"note": self.note}).encode()
        try:
            answer = self._request("/write", body)
            row_id, key = int(answer["id"]), str(answer.get("session_key") or "")
            session_id = str(answer.get("session_id") or "")
        except Exception as exc:  # any failure is what the client saw: logged, never raised
            return Attempt("write", started, self.clock(), False, error=_short(exc))
        self._last_id = row_id
        return Attempt("write", started, self.clock(), True, row_id=row_id, session_key=key or None,
                       session_id=session_id or None)

    def _read(self, row_id: int) -> Attempt:
        started = self.clock()
        try:
            self._request(f"/read/{row_id}", None)
        except Exception as exc:
            return Attempt("read", started, self.clock(), False, row_id=row_id, error=_short(exc))
        return Attempt("read", started, self.clock(), True, row_id=row_id)

    def _request(self, path: str, body: Optional[bytes]) -> Any:
        started = self.clock()
        base = self.target.base_url()  # resolving the name (when its TTL has passed) is part of the request's time
        left = HTTP_TIMEOUT - (self.clock() - started)
        if left <= 0:
            raise TimeoutError(f"resolving {self.target.name} took {HTTP_TIMEOUT - left:.2f} s of the request's "
                               f"{HTTP_TIMEOUT:g} s")
        request = urllib.request.Request(base + path, data=body, method="POST" if body is not None else "GET",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=left) as response:  # noqa: S310 - the inventory's app
            return json.loads(response.read() or b"{}")


def _query(name: str, host: str, port: int, timeout: float) -> Any:
    """One A query over UDP on a connected socket (a refusing port fails at once: see DNS_TIMEOUT)."""
    import dns.message
    import dns.query
    import dns.rdatatype

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((host, port))
        return dns.query.udp(dns.message.make_query(name, dns.rdatatype.A), host, port=port, timeout=timeout,
                             sock=sock)


def _address(answer: Any) -> Optional[Tuple[str, float]]:
    import dns.rdatatype

    for rrset in answer.answer:
        if rrset.rdtype == dns.rdatatype.A:
            return str(next(iter(rrset))), float(rrset.ttl)
    return None


def present(attempts: Sequence[Attempt], pg_params: Optional[dict], redis_params: Optional[dict]
            ) -> Tuple[List[int], List[str]]:
    """The acknowledged row ids the database primary has and the session keys the Redis primary has. A row counts
    when its id and its session id are the write's: after a failover that lost writes, the new primary gives their
    ids to new rows."""
    acknowledged = [a for a in attempts if a.op == "write" and a.ok and a.row_id is not None]
    ids = sorted({a.row_id for a in acknowledged})
    keys = sorted({a.session_key for a in attempts if a.op == "write" and a.ok and a.session_key})
    found_ids: List[int] = []
    found_keys: List[str] = []
    if pg_params and ids:
        import psycopg

        with psycopg.connect(**pg_params, autocommit=True) as conn:
            rows = conn.execute("SELECT id, session_id FROM erlmcp_app_writes WHERE id = ANY(%s)", (ids,)).fetchall()
        found_ids = _same_rows(acknowledged, {int(row[0]): str(row[1]) for row in rows})
    if redis_params and keys:
        import redis

        client = redis.Redis(**redis_params)
        try:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.exists(key)
            found_keys = [key for key, exists in zip(keys, pipe.execute(), strict=True) if exists]
        finally:
            client.close()
    return found_ids, found_keys


def _same_rows(acknowledged: Sequence[Attempt], found: Dict[int, str]) -> List[int]:
    """The acknowledged ids whose row was found with the write's session id (an application that returns none:
    by id alone)."""
    same = {a.row_id for a in acknowledged
            if a.row_id is not None and a.row_id in found and a.session_id in (None, found[a.row_id])}
    return sorted(same)


def _short(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160] if text else ''}"

"""The lab's stand-in for the erlmcp service: one small HTTP server per region (stdlib only, plus the drivers).

Run by the lab (src/erlmcp_dr/lab/app.py) as `python -m erlmcp_dr.lab.app_server --dir <lab>/app --region a --host
127.0.1.1 --port N`. It reads, from --dir:

- database.json  {"database": {"primary": "host:port", "replicas": [...], "primary_node": ..., ...}}
                 (what erlmcp.dr.app_db_config writes),
- redis.json     {"redis": {"primary": "host:port", "replicas": [...], "primary_node": ..., ...}},
- credentials.json (0600, written by the lab; never argv): {"pg_user", "pg_password", "pg_dbname",
                 "redis_user", "redis_password"},

and re-reads each one when its inode, size or mtime changes (checked on every request): no restart.

Endpoints (JSON in, JSON out):
- GET  /health      its own view of PostgreSQL and Redis (reachable, writable, latency_ms, error, endpoint);
                    200 when both are writable, else 503.
- POST /write       one row in PostgreSQL (table erlmcp_app_writes) and one session key in Redis
                    (erlmcp:session:<uuid>); returns {"id": row id, "session_id": ..., ...}. 503 when either fails.
- GET  /read/<id>   that row (from the primary) and its session key; 404 when the row does not exist.
- POST /notifications  the lab's status page: records the JSON body (what erlmcp.dr.notify's webhook channel
                    sends) as one line of notifications.jsonl in --dir; 202. GET /notifications lists them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from erlmcp_dr.lab.stop_signals import shut_down_on_stop

DATABASE_FILE = "database.json"
REDIS_FILE = "redis.json"
CREDENTIALS_FILE = "credentials.json"
NOTIFICATIONS_FILE = "notifications.jsonl"
TABLE = "erlmcp_app_writes"
SESSION_PREFIX = "erlmcp:session:"
SESSION_TTL = 7 * 24 * 3600
CONNECT_TIMEOUT = 2  # seconds: /health answers within a few seconds even when a server hangs


@dataclass
class WatchedJson:
    """A JSON file re-read when its identity (inode, size, mtime) changes; the last good content is kept."""

    path: Path
    _stamp: tuple[int, int, int] | None = None
    data: dict[str, Any] | None = None
    error: str | None = None
    loads: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def current(self) -> dict[str, Any] | None:
        with self._lock:
            try:
                st = os.stat(self.path)
            except OSError as exc:
                self.error = f"cannot read {self.path}: {exc.strerror}"
                return self.data
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
            if stamp != self._stamp:
                self._reload(stamp)
            return self.data

    def _reload(self, stamp: tuple[int, int, int]) -> None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            self.error = f"cannot use {self.path}: {exc}"
            return
        if not isinstance(data, dict):
            self.error = f"{self.path} holds {type(data).__name__}, expected a JSON object"
            return
        self._stamp, self.data, self.error = stamp, data, None
        self.loads += 1


def split_endpoint(text: str) -> tuple[str, int]:
    host, _, port = str(text).rpartition(":")
    return host, int(port)


class App:
    """The application's state: where its databases are (watched files) and how it logs in."""

    def __init__(self, folder: Path, region: str) -> None:
        self.folder = folder
        self.region = region
        self.database = WatchedJson(folder / DATABASE_FILE)
        self.redis = WatchedJson(folder / REDIS_FILE)
        self.credentials = WatchedJson(folder / CREDENTIALS_FILE)
        self._notifications_lock = threading.Lock()

    # ------------------------------------------------------------ where to connect

    def _section(self, source: WatchedJson, key: str) -> dict[str, Any]:
        data = source.current() or {}
        section = data.get(key)
        if not isinstance(section, dict) or not section.get("primary"):
            raise LookupError(source.error or f"{source.path} names no {key}.primary")
        return section

    def _secret(self, name: str) -> Any:
        return (self.credentials.current() or {}).get(name)

    def pg_connect(self) -> Any:
        import psycopg
        from psycopg.rows import dict_row

        host, port = split_endpoint(self._section(self.database, "database")["primary"])
        return psycopg.connect(host=host, port=port, user=self._secret("pg_user"),
                               password=self._secret("pg_password"), dbname=self._secret("pg_dbname") or "postgres",
                               connect_timeout=CONNECT_TIMEOUT, autocommit=True, row_factory=dict_row,
                               application_name=f"erlmcp-lab-app-{self.region}")

    def redis_connect(self) -> Any:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        host, port = split_endpoint(self._section(self.redis, "redis")["primary"])
        return redis.Redis(host=host, port=port, username=self._secret("redis_user") or None,
                           password=self._secret("redis_password") or None, socket_connect_timeout=CONNECT_TIMEOUT,
                           socket_timeout=CONNECT_TIMEOUT, decode_responses=True, retry=Retry(NoBackoff(), 0))

    # ------------------------------------------------------------ health

    def health(self) -> dict[str, Any]:
        pg_view = _timed(self._pg_health, self.database, "database")
        redis_view = _timed(self._redis_health, self.redis, "redis")
        healthy = bool(pg_view["writable"] and redis_view["writable"])
        return {"status": "ok" if healthy else "degraded", "region": self.region, "postgres": pg_view,
                "redis": redis_view, "config_loads": {"database": self.database.loads, "redis": self.redis.loads}}

    def _pg_health(self) -> dict[str, Any]:
        with self.pg_connect() as conn:
            row = conn.execute("SELECT pg_is_in_recovery() AS in_recovery, "
                               "current_setting('transaction_read_only') AS read_only").fetchone()
        writable = not row["in_recovery"] and row["read_only"] == "off"
        reason = None if writable else ("in recovery (a standby)" if row["in_recovery"] else
                                        "read-only (default_transaction_read_only is on: fenced)")
        return {"reachable": True, "writable": writable, "error": reason}

    def _redis_health(self) -> dict[str, Any]:
        client = self.redis_connect()
        try:
            client.ping()
            role = client.info("replication").get("role")
        finally:
            client.close()
        writable = role == "master"
        return {"reachable": True, "writable": writable, "role": role,
                "error": None if writable else f"role is {role}, expected master"}

    # ------------------------------------------------------------ write and read

    def write(self, note: str) -> dict[str, Any]:
        session_id = str(uuid.uuid4())
        with self.pg_connect() as conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, session_id text NOT NULL, "
                         "region text NOT NULL, note text, at timestamptz NOT NULL DEFAULT now())")
            row = conn.execute(f"INSERT INTO {TABLE} (session_id, region, note) VALUES (%s, %s, %s) "
                               "RETURNING id, at::text AS at", (session_id, self.region, note)).fetchone()
        session = {"id": row["id"], "region": self.region, "at": row["at"]}
        client = self.redis_connect()
        try:
            client.set(SESSION_PREFIX + session_id, json.dumps(session), ex=SESSION_TTL)
        finally:
            client.close()
        return {"id": row["id"], "session_id": session_id, "session_key": SESSION_PREFIX + session_id,
                "region": self.region, "database": self._node("database"), "redis": self._node("redis")}

    def read(self, row_id: int) -> dict[str, Any] | None:
        with self.pg_connect() as conn:
            exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL AS t", (TABLE,)).fetchone()["t"]
            row = conn.execute(f"SELECT id, session_id, region, note, at::text AS at FROM {TABLE} WHERE id = %s",
                               (row_id,)).fetchone() if exists else None
        if row is None:
            return None
        client = self.redis_connect()
        try:
            raw = client.get(SESSION_PREFIX + row["session_id"])
        finally:
            client.close()
        return {"row": dict(row), "session": json.loads(raw) if raw else None, "region": self.region}

    def record_notification(self, payload: Any) -> dict[str, Any]:
        entry = {"received_at": time.time(), "region": self.region, "body": payload}
        with self._notifications_lock, open(self.folder / NOTIFICATIONS_FILE, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")
        return entry

    def notifications(self) -> list[dict[str, Any]]:
        try:
            text = (self.folder / NOTIFICATIONS_FILE).read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def _node(self, key: str) -> Any:
        source = self.database if key == "database" else self.redis
        return ((source.current() or {}).get(key) or {}).get("primary_node")


def _timed(probe: Any, source: WatchedJson, key: str) -> dict[str, Any]:
    """Run one health probe: its view plus endpoint and latency, or unreachable with the error."""
    endpoint = ((source.current() or {}).get(key) or {}).get("primary")
    started = time.monotonic()
    try:
        view = probe()
    except Exception as exc:  # any failure of a dependency is what /health reports, never a crash
        view = {"reachable": False, "writable": False, "error": _one_line(exc)}
    view["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
    view["endpoint"] = endpoint
    return view


def _one_line(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).strip().splitlines())
    return f"{type(exc).__name__}: {text}"


class Handler(BaseHTTPRequestHandler):
    server: AppServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        app = self.server.app
        if self.path == "/health":
            body = app.health()
            self._send(200 if body["status"] == "ok" else 503, body)
        elif self.path.startswith("/read/"):
            self._read(self.path[len("/read/"):])
        elif self.path == "/notifications":
            self._send(200, {"notifications": app.notifications()})
        else:
            self._send(404, {"error": f"no such path {self.path}; expected /health, /read/<id>, /notifications or "
                                      "POST /write"})

    def do_POST(self) -> None:  # noqa: N802
        if self.path not in ("/write", "/notifications"):
            self._send(404, {"error": f"no such path {self.path}; expected POST /write or POST /notifications"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            payload = json.loads(self.rfile.read(length) or b"{}") if length else {}
        except ValueError:
            self._send(400, {"error": "the body is not JSON; expected {\"note\": \"...\"} or nothing"})
            return
        if self.path == "/notifications":
            self._send(202, self.server.app.record_notification(payload))
            return
        try:
            self._send(200, self.server.app.write(str((payload or {}).get("note") or "")))
        except Exception as exc:
            self._send(503, {"error": _one_line(exc)})

    def _read(self, text: str) -> None:
        if not text.isdigit():
            self._send(400, {"error": f"{text!r} is not a row id; expected /read/<number>"})
            return
        try:
            found = self.server.app.read(int(text))
        except Exception as exc:
            self._send(503, {"error": _one_line(exc)})
            return
        self._send(200, found) if found else self._send(404, {"error": f"no row {text}"})

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = (json.dumps(body) + "\n").encode()  # in its own order: status first, what an excerpt shows
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        sys.stderr.write(f"{self.log_date_time_string()} {format % args}\n")


class AppServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        super().__init__(address, Handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m erlmcp_dr.lab.app_server", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, type=Path, help="the lab's app folder (database.json, redis.json)")
    parser.add_argument("--region", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", required=True, type=int)
    args = parser.parse_args(argv)
    server = AppServer((args.host, args.port), App(args.dir, args.region))
    shut_down_on_stop(server)  # lab_app.down stops it with SIGINT (then SIGQUIT, SIGKILL)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""moto's server on a loopback port: the stand-in for AWS (S3, Route 53), since AWS cannot be reached here.

One per test session (xdist worker): `moto_endpoint` in conftest.py starts it; tests that need a clean
account call `reset()` (moto's own reset endpoint) instead of starting another. Stopped by PID at the end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for  # noqa: E402

START_TIMEOUT = 60.0
# Fake credentials: moto accepts any; real ones must never reach a test process.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/moto-api/", timeout=2):  # noqa: S310 (loopback only)
            return True
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def running(log_dir: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """Starts `moto_server` on a free loopback port, yields its endpoint URL, stops it by PID. env: moto's own
    settings (e.g. INITIAL_NO_AUTH_ACTION_COUNT, which makes it check credentials as AWS does)."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = Path(sys.executable).with_name("moto_server")
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "moto.log", "wb") as log:
        proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, **CREDENTIALS, **(env or {})},
                                start_new_session=True)
    try:
        wait_for(lambda: _answers(url) or (proc.poll() is not None and _exited(proc, log_dir)),
                 START_TIMEOUT, what=f"moto_server answering on {url}")
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _exited(proc: subprocess.Popen[bytes], log_dir: Path) -> bool:
    raise RuntimeError(f"moto_server exited with {proc.returncode}: {(log_dir / 'moto.log').read_text()[-2000:]}")


def reset(url: str) -> None:
    """Forgets every bucket, hosted zone and change moto holds (a clean account for the next test)."""
    request = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310 (loopback only)
        pass

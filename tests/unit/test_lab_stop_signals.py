"""A lab service (service_recovery's) started by a parent that ignores SIGINT (a background job: `cmd &`) still shuts
down on the SIGINT lab.down sends first, and exits 0; before, it kept the ignored SIGINT and SIGQUIT and every stop
waited out both deadlines before its SIGKILL (benchmarks/regional.py sat for minutes after its measurement)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.request

from erlmcp_dr.lab import config as lab_config


def _ignore_stop_signals() -> None:  # as in a shell's background job
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError as exc:
        return getattr(exc, "code", None) is not None  # an HTTP status (503 while starting): it serves


def test_a_service_started_with_sigint_ignored_shuts_down_on_sigint(tmp_path):
    port = lab_config.free_port_base()  # a free port (the first of a free block of lab ports)
    service = subprocess.Popen(
        [sys.executable, "-m", "erlmcp_dr.lab.services", "serve", "--dir", str(tmp_path), "--name", "auth-a",
         "--host", "127.0.0.1", "--port", str(port)],
        preexec_fn=_ignore_stop_signals,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        health = f"http://127.0.0.1:{port}/health"
        lab_config.wait_for(lambda: _answers(health), 30, interval=0.05, what="the service serving")
        service.send_signal(signal.SIGINT)
        assert service.wait(timeout=30) == 0, service.stderr.read()
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # nothing serves there any more

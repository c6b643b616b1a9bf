"""The busy machine of issue 6, made the same for every tool a benchmark times: processes that only burn CPU."""

from __future__ import annotations

import subprocess
import sys


def start_burners(count: int) -> list[subprocess.Popen[bytes]]:
    """`count` processes that only burn CPU."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def stop_burners(burners: list[subprocess.Popen[bytes]]) -> None:
    for proc in burners:
        proc.kill()
    for proc in burners:
        proc.wait(timeout=30)

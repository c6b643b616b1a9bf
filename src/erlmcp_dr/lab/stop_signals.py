"""How a lab HTTP server (the application, a service_recovery service) ends when config.stop_pid stops it."""

from __future__ import annotations

import signal
import threading
from typing import Any


def shut_down_on_stop(server: Any) -> None:
    """The socketserver `server` shuts down on SIGTERM and on stop_pid's SIGINT. Set explicitly: a parent that
    ignores SIGINT (a shell's background job, a benchmark started with `&`) passes that on, and every stop_pid would
    then wait out its deadline twice before its SIGKILL."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())

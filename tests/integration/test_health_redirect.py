"""Health checks never follow a redirect (issue 16 row 10): a real local HTTP server answering 302 to another real
server; the check reports the redirect (failed, naming where it points), and the other server gets no request."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from test_health_check import check

pytestmark = pytest.mark.integration


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        server: Any = self.server
        server.requests += 1
        body = b"ok"
        self.send_response(server.status)
        if server.location:
            self.send_header("Location", server.location)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def servers() -> Iterator[Any]:
    started: list[ThreadingHTTPServer] = []

    def start(status: int, location: str | None = None) -> tuple[Any, str]:
        server: Any = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.status, server.location, server.requests = status, location, 0
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        started.append(server)
        return server, f"http://127.0.0.1:{server.server_address[1]}/health"

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [301, 302, 307])
def test_a_redirect_is_reported_as_a_redirect_and_never_fetched(servers: Any, status: int) -> None:
    elsewhere, elsewhere_url = servers(200)
    redirecting, url = servers(status, elsewhere_url)
    result = check(kind="http", url=url)
    assert result["verdict"] == "failed" and result["samples"][0]["status"] == status, result
    assert f"HTTP status {status}, a redirect to {elsewhere_url}: not followed" in result["last_error"]
    assert "status_code" in result["last_error"] and result["samples"][0]["location"] == elsewhere_url
    assert redirecting.requests == result["sample_count"] and elsewhere.requests == 0


def test_a_redirect_listed_in_status_code_is_the_healthy_answer_still_not_followed(servers: Any) -> None:
    elsewhere, elsewhere_url = servers(500)
    _redirecting, url = servers(302, elsewhere_url)
    result = check(kind="http", url=url, status_code=[302])
    assert result["verdict"] == "healthy", result
    assert elsewhere.requests == 0

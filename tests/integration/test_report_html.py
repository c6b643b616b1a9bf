"""report.html in a real browser: headless Chromium (Debian's `chromium`) renders the page a real run wrote, and
the DOM it dumps holds the timeline chart (one bar per step, the point of no return marked) and the RTO gauge,
while every request Chromium makes goes through a recording proxy: the page makes none.

Chromium itself calls home in the background (its clock, component updates, accounts: *.google.com,
*.googleapis.com) whatever page it shows; those hosts are left out. A control page with an external image and
stylesheet shows the proxy does see a page's requests."""

from __future__ import annotations

import http.server
import shutil
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from erlmcp_dr import runner

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_OWN = (".google.com", ".googleapis.com", ".gvt1.com", ".gstatic.com")
RUNBOOK = """---
- name: Two phases
  hosts: localhost
  gather_facts: false
  vars:
    dr: "{{ ansible_facts['dr'] }}"  # runbook_params' fact as a variable, as the runbooks name it
    runbook:
      title: Two phases
      summary: Looks, then writes a marker (the point of no return), then publishes a summary.
      rto_seconds: 120
      confirm: false
      point_of_no_return: Write the marker
      parameters:
        path: {type: str, required: true, description: The marker file.}
  tasks:
    - name: Resolve the runbook's parameters
      erlmcp.dr.runbook_params:
    - name: Look first
      ansible.builtin.command: "true"
      changed_when: false
    - name: Skip this one
      ansible.builtin.debug:
        msg: never
      when: false
    - name: Write the marker
      ansible.builtin.copy:
        dest: "{{ dr.path }}"
        content: "marker\\n"
        mode: "0600"
    - name: Publish the summary
      ansible.builtin.set_stats:
        data:
          summary:
            did: ["wrote {{ dr.path }}"]
        per_host: false
"""
CONTROL = ('<!DOCTYPE html><html><head><link rel="stylesheet" href="https://fonts.example.com/a.css"></head>'
           '<body><img src="http://example.invalid/x.png"></body></html>')

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (scripts/setup.sh installs Debian's chromium)")


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def _record(self) -> None:
        self.seen.append(self.path if self.command != "CONNECT" else f"https://{self.path}/")
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_HEAD = do_CONNECT = _record

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[tuple[int, list[str]]]:
    seen: list[str] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


def _dump_dom(page: Path, proxy_port: int, profile: Path) -> str:
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}",
         f"--proxy-server=http://127.0.0.1:{proxy_port}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _page_requests(seen: list[str]) -> list[str]:
    return [url for url in seen if not (urlsplit(url).hostname or "").endswith(BROWSER_OWN)]


def test_chromium_renders_the_timeline_and_the_page_requests_nothing(tmp_path: Path, monkeypatch, proxy) -> None:
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "two_phases.yml").write_text(RUNBOOK)
    hosts = tmp_path / "hosts.ini"
    hosts.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    monkeypatch.setenv("ERLMCP_DR_HOME", str(tmp_path / "home"))
    result = runner.run("two_phases", inventory=hosts, extravars={"path": str(tmp_path / "marker")},
                        playbooks_dir=books)
    assert result.succeeded, result.to_json()
    page = Path(result.run_dir) / "report.html"
    port, seen = proxy

    dom = _dump_dom(page, port, tmp_path / "profile")
    assert '<svg id="timeline"' in dom and '<svg id="rto"' in dom
    bars = dom.count('<rect class="bar ')
    assert bars == 4, dom  # Look first, Skip this one, Write the marker, Publish (parameters: internal)
    assert 'class="bar changed"' in dom and 'class="bar skipped"' in dom
    assert 'id="point-of-no-return"' in dom and "point of no return: Write the marker" in dom
    assert "within the RTO target of 120 s" in dom
    assert _page_requests(seen) == [], seen

    control = tmp_path / "control.html"
    control.write_text(CONTROL)
    _dump_dom(control, port, tmp_path / "profile")
    assert sorted(_page_requests(seen)) == ["http://example.invalid/x.png", "https://fonts.example.com:443/"], seen

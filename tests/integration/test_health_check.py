"""erlmcp.dr.health_check against real services: the lab's PostgreSQL and Redis, a closed port, and real HTTP
servers (plain and TLS with a self-signed certificate) answering 200, 500, a wrong body, or alternating.

Most cases call the engine (module_utils/_region/health.run) directly, on the real services; two go through Ansible
(the module's argument spec, its action plugin, no_log)."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import cycle
from pathlib import Path
from typing import Any

import pytest
from runbook_helpers import closed_port, run_module

from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._region import health as _health  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.modules.health_check import argument_spec  # noqa: E402

pytestmark = pytest.mark.integration

FAST = dict(interval=0.02, timeout=10.0, sample_timeout=3.0)


def check(**options: Any) -> dict[str, Any]:
    """The engine with the module's defaults, as Ansible would fill them in."""
    params = {name: spec.get("default") for name, spec in argument_spec().items()}
    params.update(FAST)
    params.update(options)
    return _health.run(params)


# ---------------------------------------------------------------- HTTP servers


class Answers(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        status, body = next(self.server.answers)  # type: ignore[attr-defined]
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def serve(answers: list[tuple[int, str]], tls: ssl.SSLContext | None = None) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    server.answers = cycle(answers)  # type: ignore[attr-defined]
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    scheme = "https" if tls else "http"
    return server, f"{scheme}://127.0.0.1:{server.server_address[1]}/health"


@pytest.fixture
def http() -> Iterator[Any]:
    servers: list[ThreadingHTTPServer] = []

    def start(answers: list[tuple[int, str]], tls: ssl.SSLContext | None = None) -> str:
        server, url = serve(answers, tls)
        servers.append(server)
        return url

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def self_signed(folder: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context with a new self-signed certificate for 127.0.0.1, and the certificate's file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file


def test_http_healthy_needs_the_status_and_the_body(http: Any) -> None:
    ok = check(kind="http", url=http([(200, '{"status": "ok"}')]), body_match='"status": "ok"')
    assert (ok["verdict"], ok["confirmed"], ok["sample_count"]) == ("healthy", True, 2), ok
    assert [s["status"] for s in ok["samples"]] == [200, 200]
    assert ok["samples"][0]["at"].endswith("Z") and ok["samples"][1]["elapsed"] >= FAST["interval"]

    wrong = check(kind="http", url=http([(200, '{"status": "degraded"}')]), body_match='"status": "ok"')
    assert (wrong["verdict"], wrong["sample_count"], wrong["failures"]) == ("failed", 3, 3), wrong
    assert "does not match" in wrong["last_error"] and "(body_match)" in wrong["last_error"]

    error = check(kind="http", url=http([(500, "boom")]))
    assert error["verdict"] == "failed" and error["samples"][0]["status"] == 500
    assert "HTTP status 500, expected 200 (status_code)" in error["last_error"]


def test_http_alternating_answers_are_flapping(http: Any) -> None:
    # A flapping server never confirms, so the check samples until its deadline: 0.5 s held only 3 samples once under
    # a loaded CI run. The deadline is the window, not a speed claim; every sample in it must alternate.
    result = check(kind="http", url=http([(200, "ok"), (500, "no")]), timeout=2.0)
    assert (result["verdict"], result["confirmed"]) == ("flapping", False), result
    assert result["successes"] and result["failures"]
    answers = [s["ok"] for s in result["samples"]]
    assert len(answers) >= 4 and answers == [index % 2 == 0 for index in range(len(answers))], answers


def test_tls_with_a_self_signed_certificate_is_refused_unless_told(http: Any, tmp_path: Path) -> None:
    context, cert_file = self_signed(tmp_path)
    url = http([(200, "ok")], tls=context)
    refused = check(kind="http", url=url)
    assert refused["verdict"] == "failed", refused
    assert "not trusted" in refused["last_error"] and "validate_certs=false" in refused["last_error"]
    assert check(kind="http", url=url, validate_certs=False)["verdict"] == "healthy"
    assert check(kind="http", url=url, ca_path=str(cert_file))["verdict"] == "healthy"


def test_tcp_open_and_closed(untouched: lab.LabConfig) -> None:
    assert check(kind="tcp", host="127.0.0.1", port=untouched.node("pg-a").port)["verdict"] == "healthy"
    closed = check(kind="tcp", host="127.0.0.1", port=closed_port())
    assert (closed["verdict"], closed["sample_count"]) == ("failed", 3), closed
    assert "refused" in closed["last_error"].lower()


def test_postgres_writable_or_not(untouched: lab.LabConfig) -> None:
    login = dict(kind="postgres", host="127.0.0.1", login_user=lab.SUPERUSER, login_password=lab.LAB_PASSWORD)
    primary = check(port=untouched.node("pg-a").port, expect_writable=True, **login)
    assert primary["verdict"] == "healthy" and primary["samples"][0]["writable"] is True, primary
    standby = check(port=untouched.node("pg-b").port, expect_writable=True, **login)
    assert standby["verdict"] == "failed" and standby["samples"][0]["in_recovery"] is True
    assert "in recovery" in standby["last_error"] and "(expect_writable)" in standby["last_error"]
    assert check(port=untouched.node("pg-b").port, expect_writable=False, **login)["verdict"] == "healthy"
    assert check(port=untouched.node("pg-c").port, **login)["verdict"] == "healthy"  # a login is enough
    with pytest.raises(ModuleFailure) as refused:  # a wrong password is a setting to fix: no more samples
        check(port=untouched.node("pg-a").port, **dict(login, login_password="not-the-password"))
    assert "(login_password)" in str(refused.value) and len(refused.value.facts["samples"]) == 1
    assert "not-the-password" not in str(refused.value) + json.dumps(refused.value.facts)


def test_redis_ping_and_role(untouched: lab.LabConfig) -> None:
    login = dict(kind="redis", host="127.0.0.1", login_password=lab.LAB_PASSWORD)
    assert check(port=untouched.redis_node("redis-a").port, expect_role="primary", **login)["verdict"] == "healthy"
    replica = check(port=untouched.redis_node("redis-b").port, expect_role="primary", **login)
    assert replica["verdict"] == "failed" and replica["samples"][0]["role"] == "replica"
    assert "expected a primary (expect_role)" in replica["last_error"]
    down = check(port=closed_port(), **login)
    assert down["verdict"] == "failed" and down["samples"][0]["reachable"] is False
    with pytest.raises(ModuleFailure, match="password was rejected"):
        check(port=untouched.redis_node("redis-a").port, **dict(login, login_password="not-the-password"))


def test_impossible_settings_fail_before_sampling(http: Any) -> None:
    with pytest.raises(ModuleFailure, match="raise timeout"):
        check(kind="http", url=http([(200, "ok")]), interval=5, timeout=1)


def test_through_ansible_the_verdict_fails_the_task_only_when_asked(untouched: lab.LabConfig) -> None:
    args = dict(kind="postgres", host="127.0.0.1", port=untouched.node("pg-b").port, login_user=lab.SUPERUSER,
                login_password=lab.LAB_PASSWORD, expect_writable=True, interval=0.02, timeout=10)
    result = run_module("erlmcp.dr.health_check", args, check=True)
    assert not result["failed"] and not result["changed"] and result["verdict"] == "failed", result
    failing = run_module("erlmcp.dr.health_check", dict(args, fail_on=["failed"]))
    assert failing["failed"] and failing["verdict"] == "failed" and "(fail_on)" in failing["msg"], failing
    assert lab.LAB_PASSWORD not in json.dumps(result) + json.dumps(failing)
    missing = run_module("erlmcp.dr.health_check", dict(kind="http"))
    assert missing["failed"] and "url" in missing["msg"], missing

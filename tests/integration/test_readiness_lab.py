"""The readiness runbook on a real lab (PostgreSQL streaming replication, redis-server, Knot DNS with TSIG, the
lab application, a local TLS listener): the healthy lab gives no failure (warnings only where a source is "not
configured"); then every misconfiguration we can seed on the lab at once - paused replay with writes, a stopped
Redis replica, an old Redis backup, TTL 300, a wrong TSIG secret, a certificate that expires in 10 days, an old
drill record, contacts too old - each found by its own check; then un-seeded, healthy again. No run changes
anything: the fingerprint (PostgreSQL and Redis roles, zone serials, the backup catalog, the drill history, the
lock folder) is the same before and after. One lab for the module, three CLI runs (the CI budget)."""

from __future__ import annotations

import datetime
import hashlib
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pitr_helpers import prove_newest_backup
from runbook_helpers import (
    inventory_copy,
    new_lab,
    redis_client,
    redis_login_args,
    run_module,
    runbook_cli,
    sql,
    topology,
    wait_for,
)

from erlmcp_dr.lab import dns as lab_dns
from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.lab import pgbackrest as lab_pgbackrest

pytestmark = pytest.mark.integration

DRILL_KINDS = ("database_primary", "redis_primary", "app_instance", "region")
NOT_CONFIGURED = "not configured"


# ---------------------------------------------------------------- a TLS listener with a certificate of our own


def _certificate(folder: Path, days: int) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days)).sign(key, hashes.SHA256()))
    cert_path, key_path = folder / f"cert-{days}.pem", folder / f"key-{days}.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class TlsListener:
    """Completes TLS handshakes on a loopback port with the certificate it is given (swappable), until stopped."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.context = self._context(90)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _context(self, days: int) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*_certificate(self.folder, days))
        return context

    def expire_in(self, days: int) -> None:
        self.context = self._context(days)

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            try:
                conn.settimeout(5)
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except OSError:
                pass
            finally:
                conn.close()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.server.close()


# ---------------------------------------------------------------- the lab


@pytest.fixture(scope="module")
def ready_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[lab.LabConfig, TlsListener]]:
    with new_lab(app=True, dns=True) as cfg:
        listener = TlsListener(tmp_path_factory.mktemp("tls"))
        try:
            yield cfg, listener
        finally:
            listener.stop()


def _drill_history(cfg: lab.LabConfig, days_ago: float) -> Path:
    path = cfg.root / "drills" / "history.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    when = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=days_ago)
    path.write_text("".join(json.dumps(dict(kind=kind, verdict="passed", finished_at=when.isoformat(),
                                            run_id=f"drill-{kind}")) + "\n" for kind in DRILL_KINDS))
    return path


def _inventory(cfg: lab.LabConfig, listener: TlsListener, name: str, contacts_days_ago: float = 3,
               tsig_secret: str | None = None) -> Path:
    reviewed = (datetime.date.today() - datetime.timedelta(days=contacts_days_ago)).isoformat()

    def change(data: dict[str, Any]) -> None:
        extra = {"dr_public_endpoints": [f"https://127.0.0.1:{listener.port}/"],
                 "dr_capacity": {"regions": {"b": 100, "c": 100}, "load": 100},
                 "dr_contacts_reviewed_at": reviewed,
                 "dr_drill_history": str(cfg.root / "drills" / "history.jsonl")}
        if tsig_secret is not None:
            extra["dns_tsig_secret"] = tsig_secret
        data["all"]["vars"].update(extra)

    return inventory_copy(cfg, name, change)


def _backup_dir(cfg: lab.LabConfig) -> Path:
    return cfg.root / "redis" / "backups"


def _fresh_backup(cfg: lab.LabConfig) -> None:
    args = dict(redis_login_args(cfg, "redis-a"), store_dir=str(_backup_dir(cfg)), node_name="redis-a",
                poll_interval=0.05)
    result = run_module("erlmcp.dr.redis_backup", args)
    assert not result["failed"] and result["verified"], result


def _tree_digest(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def fingerprint(cfg: lab.LabConfig) -> dict[str, Any]:
    """What readiness must never change: roles, Redis roles and upstreams, zone serials, files it reads."""
    return {
        "postgres": topology(cfg),
        "redis": {row["name"]: (row["role"], row["upstream"]) for row in lab.redis_status(cfg)},
        "serials": [row["serial"] for row in lab_dns.status(cfg)],
        "backups": _tree_digest(_backup_dir(cfg)),
        "drills": _tree_digest(cfg.root / "drills"),
        "locks": sorted(p.name for p in (cfg.root / "locks").glob("*")) if (cfg.root / "locks").is_dir() else [],
    }


def readiness(inventory: Path, expect_rc: int) -> dict[str, dict[str, Any]]:
    cli = runbook_cli("readiness", "-i", str(inventory), "--json")
    assert cli.rc == expect_rc, cli
    result = cli.json
    assert result["exit_code"] == expect_rc and result["checks"], cli
    assert lab.LAB_PASSWORD not in cli.stdout + cli.stderr
    return {check["name"]: check for check in result["checks"]}


def assert_healthy(checks: dict[str, dict[str, Any]]) -> None:
    failed = {name: c["detail"] for name, c in checks.items() if c["verdict"] == "fail"}
    assert not failed, failed
    warned = {name: c["detail"] for name, c in checks.items() if c["verdict"] == "warn"}
    assert not warned, warned  # the lab configures every source: backups, archive, residency data
    assert len(checks) >= 14


def test_readiness_finds_each_seeded_misconfiguration_and_changes_nothing(ready_lab, home) -> None:
    cfg, listener = ready_lab
    _drill_history(cfg, days_ago=1)
    _fresh_backup(cfg)
    lab_pgbackrest.run(cfg, "backup", "--type=full")  # the lab's stanza: a backup to be recent
    prove_newest_backup(cfg)  # and a restore of it proven (pg_restore_verify's record)
    healthy = _inventory(cfg, listener, "healthy")
    before = fingerprint(cfg)

    checks = readiness(healthy, expect_rc=0)  # ready: every check passes
    assert_healthy(checks)
    for name in ("pg_replay_lag pg-b", "pg_replay_lag pg-c", "pg_standbys region b", "redis_link redis-b",
                 "redis_offset redis-c", "redis_backup_age", "dns_ttl api", "dns_agree health",
                 "reachable region a", "capacity region b", "drill region", "lock_store directory", "contacts_age",
                 "pg_backup_age", "wal_archive_age", "pg_restore_verified_age", "residency region b",
                 "residency region c"):
        assert checks[name]["verdict"] == "pass", checks[name]
    assert checks["dns_ttl api"]["measured"] == lab_dns.TTL
    credentials = [c for name, c in checks.items() if name.startswith("dns_credentials")]
    assert [c["verdict"] for c in credentials] == ["pass"] and credentials[0]["measured"] == "NXRRSET", credentials
    assert fingerprint(cfg) == before

    # Seed every misconfiguration the lab can hold, each on its own check.
    sql(cfg, "pg-b", "SELECT pg_wal_replay_pause()")
    sql(cfg, "pg-a", "CREATE TABLE IF NOT EXISTS readiness_probe (id int); INSERT INTO readiness_probe VALUES (1)")
    with redis_client(cfg, "redis-c") as client:
        client.shutdown(nosave=True)
    wait_for(lambda: lab._lab_redis_pid(cfg.redis_node("redis-c")) is None, 30, what="redis-c stopped")
    catalog = {path: path.read_text() for path in _backup_dir(cfg).glob("*.json")}
    for path in catalog:
        metadata = json.loads(path.read_text())
        metadata["lastsave"] -= 3600
        path.write_text(json.dumps(metadata))
    lab_dns.set_ttl(cfg, "api", 300)
    listener.expire_in(10)
    _drill_history(cfg, days_ago=400)
    seeded = _inventory(cfg, listener, "seeded", contacts_days_ago=90, tsig_secret="d3Jvbmcgc2VjcmV0IGZvciB0ZXN0cw==")

    checks = readiness(seeded, expect_rc=2)
    found = {name: c for name, c in checks.items() if c["verdict"] != "pass"}
    expected = {
        "pg_replay_lag pg-b": "paused",
        "redis_link redis-c": "",
        "redis_backup_age": "too old",
        "dns_ttl api": "",
        f"certificate https://127.0.0.1:{listener.port}/": "expires in",
        "drill database_primary": "overdue",
        "drill redis_primary": "overdue",
        "drill app_instance": "overdue",
        "drill region": "overdue",
        "contacts_age": "too old",
        "reachable region c": "redis",
    }
    for name, words in expected.items():
        assert name in found and found[name]["verdict"] == "fail" and words in found[name]["detail"], checks.get(name)
    credentials = [name for name, c in found.items() if name.startswith("dns_credentials")]
    assert len(credentials) == 1 and found[credentials[0]]["verdict"] == "fail", credentials
    # Each seed shows on its own check(s) only: nothing else failed or warned beyond the "not configured" hooks.
    others = {name: c["detail"] for name, c in found.items() if name not in expected and name not in credentials}
    assert all(detail.startswith(NOT_CONFIGURED) for detail in others.values()), others
    assert checks["dns_ttl api"]["measured"] == 300
    assert checks["pg_replay_lag pg-c"]["verdict"] == "pass"  # one paused standby, not the other

    # Un-seed: healthy again, through `runbook run readiness` (the runbook's envelope carries the checks), and
    # nothing readiness did shows in the fingerprint.
    sql(cfg, "pg-b", "SELECT pg_wal_replay_resume()")
    lab.up(cfg)
    lab.wait_redis_linked(cfg)
    lab_dns.reset_zone(cfg)
    listener.expire_in(90)
    _drill_history(cfg, days_ago=1)
    for path, text in catalog.items():
        path.write_text(text)
    lab.wait_streaming(cfg, caught_up=True)
    before = fingerprint(cfg)
    cli = runbook_cli("run", "readiness", "-i", str(healthy), "--json")
    assert cli.rc == 0, cli  # `runbook run` exits 0 only when ready (require_ready, on by default)
    envelope = cli.json["facts"]["summary"]
    assert envelope["runbook"] == "readiness" and envelope["did"] == ["nothing was changed"]
    assert envelope["details"]["verdict"] == "ready" and envelope["end_state"]["ok"] is True
    assert_healthy({check["name"]: check for check in envelope["details"]["checks"]})
    assert fingerprint(cfg) == before

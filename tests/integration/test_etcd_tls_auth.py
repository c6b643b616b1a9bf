"""Issue 22, Part 1: the run lock's etcd store over TLS with a user and password, against a real etcd member that
serves https only (certificates made here with Python's cryptography) and has authentication enabled (etcdctl): the
store connects and takes the lock through ansible-playbook; a wrong password or an untrusted certificate is a clear
error that changes nothing (readiness says "automation unavailable"); the password appears in no output, result or
file of the run, nor of the readiness runbook that asks the member with the same variables. REQUESTS_CA_BUNDLE is set
as execution environments set it: before the fix, the store's CA file lost to it and no member could be reached."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from runbook_helpers import VENV_BIN, playbook_env, runbook_command

from erlmcp_dr import paths
from erlmcp_dr.lab import ports as lab_ports

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._lock import etcd as _lock_etcd  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._lock import store as _lock  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._region import readiness as _readiness  # noqa: E402

PLAYBOOK = Path(__file__).resolve().parents[1] / "fixtures" / "lock" / "etcd_hold.yml"
PASSWORD = "s3cret-etcd-pw-7f1c"  # a needle: must appear nowhere the run writes
KEY = "dns:tls.example."
DEADLINE = 120  # a hang guard, never a timing assertion
pytestmark = pytest.mark.integration


def write_certificates(folder: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it; keys mode 0600."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject: str, key: Any, issuer: str, issuer_key: Any, ca: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(
                ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    paths_ = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server-key.pem"}
    pem = serialization.Encoding.PEM
    paths_["ca"].write_bytes(certificate("erlmcp-test-ca", ca_key, "erlmcp-test-ca", ca_key, True).public_bytes(pem))
    paths_["cert"].write_bytes(certificate("etcd", server_key, "erlmcp-test-ca", ca_key, False).public_bytes(pem))
    fd = os.open(paths_["key"], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths_


@pytest.fixture(scope="module")
def member() -> Iterator[dict[str, Any]]:
    """One etcd member serving its clients over https only, with authentication enabled (user root)."""
    root = Path(tempfile.mkdtemp(prefix="erlmcp-dr-etcd-tls-"))
    certs = write_certificates(root)
    port = lab_ports.free_port_base(lab_ports.TEST_PORTS[0], lab_ports.TEST_PORTS[1], 2)
    endpoint, peer = f"https://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"
    command = [shutil.which("etcd") or "etcd", "--name", "tls", "--data-dir", str(root / "data"),
               "--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
               "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", f"tls={peer}",
               "--cert-file", str(certs["cert"]), "--key-file", str(certs["key"]), "--logger", "zap"]
    with open(root / "etcd.log", "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        ctl = [shutil.which("etcdctl") or "etcdctl", "--endpoints", endpoint, "--cacert", str(certs["ca"])]
        wait_for(lambda: subprocess.run([*ctl, "endpoint", "health"], capture_output=True).returncode == 0, DEADLINE,
                 interval=0.2, what="the TLS etcd member healthy")
        for args in (["role", "add", "root"], ["user", "add", "root", "--new-user-password", PASSWORD],
                     ["user", "grant-role", "root", "root"], ["auth", "enable"]):
            done = subprocess.run([*ctl, *args], capture_output=True, text=True)
            assert done.returncode == 0, (args[:2], done.stderr)
        yield {"endpoint": endpoint, "certs": certs, "root": root}
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=DEADLINE)
        shutil.rmtree(root, ignore_errors=True)


def variables(member: dict[str, Any], **more: Any) -> dict[str, Any]:
    found = {"dr_lock_store": "etcd", "dr_lock_etcd_endpoints": [member["endpoint"]], "dr_lock_etcd_ttl": 5,
             "dr_lock_etcd_ca_file": str(member["certs"]["ca"]), "dr_lock_etcd_user": "root",
             "dr_lock_etcd_password": PASSWORD, "dr_lock_etcd_timeout": 2}
    found.update(more)
    return {name: value for name, value in found.items() if value is not None}


def store(member: dict[str, Any], **more: Any) -> _lock_etcd.EtcdStore:
    return _lock.make_store(_lock.store_settings(variables(member, **more), environ={}))


def readiness_params(member: dict[str, Any], password: str = PASSWORD) -> dict[str, Any]:
    """erlmcp.dr.readiness's parameters for this member, as playbooks/readiness.yml passes the inventory's."""
    return {"lock_store": "etcd", "lock_etcd_password": password,
            "lock_etcd": {"endpoints": [member["endpoint"]], "ca_file": str(member["certs"]["ca"]), "user": "root",
                          "timeout": 2}}


@pytest.fixture
def container_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> str:
    """REQUESTS_CA_BUNDLE set, as in many containers and execution environments, to a bundle without the etcd CA:
    dr_lock_etcd_ca_file must win over it (requests lets it override a session's own CA file)."""
    import certifi

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    return certifi.where()


def test_over_tls_with_a_password_the_store_takes_the_lock_and_bad_credentials_are_clear_errors(
        member, container_ca_bundle):
    good = store(member)
    taken = good.acquire(_lock.holder_record(KEY, "tls-run", os.getpid(), 60, runbook="tls"))
    assert taken["decision"] == _lock.TAKE and taken["record"]["token"] > 0

    with pytest.raises(_lock.LockStoreError) as refused:
        store(member, dr_lock_etcd_password="wrong-password").inspect(KEY, "other")
    message = str(refused.value)
    assert "etcd refused the login of dr_lock_etcd_user 'root'" in message and "dr_lock_etcd_password" in message
    assert "wrong-password" not in message

    with pytest.raises(_lock_etcd.EtcdUnavailable) as untrusted:  # the member's certificate is not from a known CA
        store(member, dr_lock_etcd_ca_file=None).inspect(KEY, "other")
    assert member["endpoint"] in str(untrusted.value) and "fails closed" in str(untrusted.value)

    with pytest.raises(_lock.LockStoreError, match="dr_lock_etcd_user and dr_lock_etcd_password go together"):
        store(member, dr_lock_etcd_password=None)
    # readiness asks through the same client: the login refused is "automation unavailable", without the password.
    (refused_check,) = _readiness.lock_store_checks(readiness_params(member, "wrong-password"))
    assert refused_check["verdict"] == "fail" and refused_check["detail"].startswith(
        "automation unavailable: 0 of 1 etcd members answer"), refused_check
    assert "etcd refused the login of dr_lock_etcd_user 'root'" in refused_check["detail"]
    assert "wrong-password" not in refused_check["detail"]
    untrusted_params = readiness_params(member)
    untrusted_params["lock_etcd"]["ca_file"] = None  # the member's certificate is not from a known CA
    (untrusted_check,) = _readiness.lock_store_checks(untrusted_params)
    assert untrusted_check["verdict"] == "fail" and untrusted_check["detail"].startswith(
        "automation unavailable: 0 of 1 etcd members answer"), untrusted_check
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted_check["detail"] and PASSWORD not in untrusted_check["detail"]
    assert good.inspect(KEY, "tls-run")["decision"] == _lock.HELD  # none of the refused ones changed anything
    assert good.release(KEY, "tls-run")["outcome"] == _lock.RELEASED


def test_a_run_takes_the_lock_over_tls_and_its_password_is_written_nowhere(member, tmp_path, container_ca_bundle):
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {
        "hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}},
        "vars": variables(member)}}))
    signal_file, home = tmp_path / "taken.json", tmp_path / "home"
    env = dict(playbook_env(), ERLMCP_DR_LOCK_DIR=str(tmp_path / "locks"), ERLMCP_DR_HOME=str(home))
    run = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-v", "-i", str(inventory), str(PLAYBOOK),
                          "-e", f"lock_key={KEY}", "-e", f"signal_file={signal_file}"],
                         capture_output=True, text=True, env=env, timeout=DEADLINE)
    assert run.returncode == 0, run.stdout[-3000:]
    taken = json.loads(signal_file.read_text())
    assert taken["store"] == "etcd" and taken["held"] and taken["token"] > 0
    assert PASSWORD not in run.stdout + run.stderr
    # The readiness runbook reads the same inventory variables: it logs in over TLS and asks the member.
    ready = subprocess.run([*runbook_command(), "readiness", "-i", str(inventory), "--json"], capture_output=True,
                           text=True, env=env, timeout=DEADLINE, stdin=subprocess.DEVNULL)
    assert ready.returncode == 1, ready.stderr[-3000:]  # warnings: every other source is "not configured"
    lock = {check["name"]: check for check in json.loads(ready.stdout)["checks"]}["lock_store etcd"]
    assert (lock["verdict"], lock["measured"]) == ("pass", "1/1"), lock
    assert PASSWORD not in ready.stdout + ready.stderr
    written = [path for path in tmp_path.rglob("*") if path.is_file() and PASSWORD.encode() in path.read_bytes()]
    assert written == [inventory]  # only the inventory the operator wrote (vault, in real life) holds it: not the
    # readiness run's folder either (its parameter lock_etcd_password is no_log)
    assert store(member).inspect(KEY, "after")["decision"] == _lock.TAKE  # released at the run's end

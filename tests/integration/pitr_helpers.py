"""Helpers of the point-in-time restore tests and of benchmarks/pitr.py: a writer that logs every acknowledged
insert with its commit time, the engines' parameters for a lab, copies of a lab's repository to break safely, and
the check that a restored copy holds exactly the rows committed at or before the target."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from runbook_helpers import DEADLINE, connect, sql, wait_topology

from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.lab import pgbackrest as lab_pgbackrest
from erlmcp_dr.lab.config import write_private
from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr import backup as _pitr_backup  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr import restore as _pitr_restore  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr import verify as _pitr_verify  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.modules import pg_backup as backup_module  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.modules import pg_restore as restore_module  # noqa: E402

TABLE = "pitr_rows"
PRIMARY = "pg-a"


@dataclass
class Writes:
    """Every acknowledged insert: its id and its commit time as PostgreSQL recorded it (track_commit_timestamp)."""

    committed: list[tuple[int, datetime]] = field(default_factory=list)

    def at_or_before(self, moment: datetime) -> set[int]:
        return {row_id for row_id, at in self.committed if at <= moment}

    def random_targets(self, count: int, rng: random.Random) -> list[datetime]:
        """count targets strictly inside the writes (a commit after each, so replay reaches it): half of them exactly
        a commit's time (the inclusive edge), half between two commits."""
        inside = self.committed[1:-1]
        targets = []
        for index in range(count):
            row_id, at = rng.choice(inside)
            if index % 2:
                following = dict(self.committed)[row_id + 1]
                at = at + (following - at) / 2
            targets.append(at)
        return targets


def write_rows(cfg: lab.LabConfig, count: int, start_id: int = 1, writes: Writes | None = None) -> Writes:
    """count single-row transactions on the primary, each logged once acknowledged, with its commit time."""
    writes = writes or Writes()
    with connect(cfg, PRIMARY) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id int PRIMARY KEY)")
        for row_id in range(start_id, start_id + count):
            conn.execute(f"INSERT INTO {TABLE} (id) VALUES (%s)", (row_id,))
            at = conn.execute(f"SELECT pg_xact_commit_timestamp(xmin) AS at FROM {TABLE} WHERE id = %s",
                              (row_id,)).fetchone()["at"]
            writes.committed.append((row_id, at))
    return writes


def row_ids(cfg: lab.LabConfig, node: str) -> set[int]:
    """The ids of the writer's rows that `node` holds."""
    return {row["id"] for row in sql(cfg, node, f"SELECT id FROM {TABLE}")}


def standbys_follow_with_the_rows(cfg: lab.LabConfig, standbys: tuple[str, ...], timeline: int, rows: set[int],
                                  new_id: int) -> None:
    """After a restore in place: `standbys` stream the primary on its `timeline` and hold what it holds, `rows`,
    and the row `new_id` written now; raises (wait_topology, wait_for) when they do not within the deadline."""
    wait_topology(cfg, {name: {"role": "standby", "upstream": PRIMARY, "timeline": timeline} for name in standbys},
                  "the standbys streaming the restored primary's timeline")
    write_rows(cfg, 1, start_id=new_id)
    for name in standbys:
        wait_for(lambda name=name: row_ids(cfg, name) == rows | {new_id}, DEADLINE, interval=0.1,
                 what=f"{name} to hold the restored rows and the new one")


def archive_now(cfg: lab.LabConfig) -> str:
    """Switch WAL on the primary and wait (polled) until the switched segment is archived; its name."""
    with connect(cfg, PRIMARY) as conn:
        segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal()) AS name").fetchone()["name"]

    def archived() -> bool:
        with connect(cfg, PRIMARY) as conn:
            row = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()
        return bool(row["last_archived_wal"]) and row["last_archived_wal"] >= segment

    wait_for(archived, DEADLINE, interval=0.1, what=f"WAL segment {segment} archived")
    return segment


def _defaults(spec: dict[str, Any]) -> dict[str, Any]:
    return {name: option.get("default") for name, option in spec.items()}


def backup_params(cfg: lab.LabConfig, **overrides: Any) -> dict[str, Any]:
    """pg_backup's parameters for the lab's primary, its module's defaults for the rest."""
    node = cfg.node(PRIMARY)
    params = _defaults(backup_module.argument_spec())
    params.update(stanza=lab_pgbackrest.STANZA, config=str(lab_pgbackrest.config_path(cfg.root)),
                  pg_data_dir=str(node.data_dir), login_port=node.port, login_user=lab.SUPERUSER,
                  login_password=lab.LAB_PASSWORD)
    params.update(overrides)
    return params


def restore_params(cfg: lab.LabConfig, scratch: str, **overrides: Any) -> dict[str, Any]:
    """pg_restore's parameters for the lab (the scratch under <lab>/pg/pitr-*, which lab.down stops)."""
    params = _defaults(restore_module.argument_spec())
    params.update(stanza=lab_pgbackrest.STANZA, config=str(lab_pgbackrest.config_path(cfg.root)),
                  pg_data_dir=str(cfg.node(PRIMARY).data_dir),
                  live_data_dirs=[str(node.data_dir) for node in cfg.nodes],
                  scratch_dir=str(scratch_dir(cfg, scratch)), login_user=lab.SUPERUSER,
                  login_password=lab.LAB_PASSWORD, recovery_timeout=DEADLINE, start_timeout=DEADLINE,
                  check_query=f"SELECT coalesce(array_agg(id ORDER BY id), '{{}}') AS ids FROM {TABLE}")
    params.update(overrides)
    return params


def scratch_dir(cfg: lab.LabConfig, name: str) -> Path:
    return cfg.root / "pg" / f"pitr-{name}"


def take_backup(cfg: lab.LabConfig, **overrides: Any) -> dict[str, Any]:
    return _pitr_backup.run(backup_params(cfg, **overrides))


def restore(cfg: lab.LabConfig, scratch: str, **overrides: Any) -> dict[str, Any]:
    return _pitr_restore.run(restore_params(cfg, scratch, **overrides))


def prove_newest_backup(cfg: lab.LabConfig, **overrides: Any) -> dict[str, Any]:
    """pg_restore_verify's engine on the lab: the newest backup restored, checked, its record written."""
    return _pitr_verify.run(restore_params(cfg, "verify", **overrides))


def restored_ids(result: dict[str, Any]) -> set[int]:
    return set(result["proof"]["check_rows"][0]["ids"])


def mismatches(writes: Writes, target: datetime, restored: set[int]) -> dict[str, list[int]]:
    """Rows committed at or before the target that the copy lacks, and rows committed after it that it holds."""
    expected = writes.at_or_before(target)
    everything = {row_id for row_id, _ in writes.committed}
    return {"missing": sorted(expected - restored), "extra": sorted((restored & everything) - expected)}


def repository_copy(cfg: lab.LabConfig, name: str, stanza: str = lab_pgbackrest.STANZA) -> Path:
    """A copy of the lab's repository and a config naming it (and `stanza`): break it without touching the lab's.
    Returns the copy's config file."""
    home = cfg.root / f"pgbackrest-{name}"
    shutil.rmtree(home, ignore_errors=True)
    subprocess.run(["cp", "-a", str(lab_pgbackrest.home(cfg.root)), str(home)], check=True, timeout=DEADLINE)
    config = home / "pgbackrest.conf"
    text = lab_pgbackrest.config_path(cfg.root).read_text().replace(str(lab_pgbackrest.home(cfg.root)), str(home))
    config.write_text(text.replace(f"[{lab_pgbackrest.STANZA}]", f"[{stanza}]"))
    os.chmod(config, 0o600)
    owner = os.stat(lab_pgbackrest.home(cfg.root))
    os.chown(config, owner.st_uid, owner.st_gid)
    return config


def archive_files(config: Path) -> list[Path]:
    """The WAL segment files of a repository (copy) whose config is `config`."""
    repo = Path(next(line.split("=", 1)[1] for line in config.read_text().splitlines()
                     if line.startswith("repo1-path=")))
    return sorted(p for p in (repo / "archive").rglob("*") if p.is_file() and len(p.name.split("-")[0]) == 24)


# -- an S3 repository (moto's server over TLS) --------------------------------------------------------------------

S3_BUCKET = "erlmcp-pg-backups"
S3_REGION = "us-east-1"
# moto answers the first three requests without credentials (the IAM user, its policy, its key: what an AWS admin
# does once), then checks every request's signature as S3 does: an unknown key gets 403 InvalidAccessKeyId.
S3_UNAUTHENTICATED_SETUP = {"INITIAL_NO_AUTH_ACTION_COUNT": "3"}


@contextmanager
def tls_front(upstream: str, folder: Path) -> Iterator[str]:
    """HTTPS on a free loopback port in front of moto's plain HTTP server (pgBackRest speaks S3 over TLS only);
    yields its URL. Not moto's own --ssl: its server (werkzeug) closes each TLS session without close_notify, which
    OpenSSL 3 in pgBackRest reads as "unexpected eof" after a PUT, failing stanza-create. This front ends each
    session with close_notify, as S3 does. A certificate made up for the test (the configs turn verification off)."""
    import select
    import socket
    import ssl
    import threading

    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True,
                   timeout=DEADLINE)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    upstream_port = int(upstream.rsplit(":", 1)[1])
    listener = socket.create_server(("127.0.0.1", 0))

    def relay(tls: ssl.SSLSocket, back: socket.socket) -> None:
        """Both directions in this one thread: an SSL object used by two threads at once makes OpenSSL abort the
        process (a reader blocked in recv while another thread sends close_notify did, once in CI)."""
        while True:
            readable = [tls] if tls.pending() else select.select([tls, back], [], [], DEADLINE)[0]
            if not readable:
                return
            if tls in readable:
                data = tls.recv(65536)
                if not data:
                    return
                back.sendall(data)
            if back in readable:
                data = back.recv(65536)
                if not data:
                    return  # moto answered and closed: end the TLS session properly
                tls.sendall(data)

    def serve(raw: socket.socket) -> None:
        try:
            tls = context.wrap_socket(raw, server_side=True)
            back = socket.create_connection(("127.0.0.1", upstream_port))
        except OSError:
            raw.close()
            return
        try:
            relay(tls, back)
        except OSError:
            pass
        for close in (tls.unwrap, tls.close, back.close):
            try:
                close()
            except OSError:
                pass

    def accept() -> None:
        while True:
            try:
                raw, _addr = listener.accept()
            except OSError:  # the listener closed: the test is over
                return
            threading.Thread(target=serve, args=(raw,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def s3_account(endpoint: str) -> tuple[str, str]:
    """An IAM user allowed s3:* with an access key, and the bucket (made with that key); (key id, secret)."""
    import json

    import boto3
    import urllib3

    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # moto's made-up certificate
    admin = {"endpoint_url": endpoint, "verify": False, "region_name": S3_REGION,
             "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    iam = boto3.client("iam", **admin)
    iam.create_user(UserName="pgbackrest")
    iam.put_user_policy(UserName="pgbackrest", PolicyName="backups", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="pgbackrest")["AccessKey"]
    s3 = boto3.client("s3", **{**admin, "aws_access_key_id": key["AccessKeyId"],
                               "aws_secret_access_key": key["SecretAccessKey"]})
    s3.create_bucket(Bucket=S3_BUCKET)
    return key["AccessKeyId"], key["SecretAccessKey"]


def s3_config(cfg: lab.LabConfig, name: str, endpoint: str, key: tuple[str, str], with_local: bool = False,
              port: int | None = None, io_timeout: int | None = None) -> Path:
    """A pgBackRest config whose S3 repository is moto's bucket: repo1, or repo2 beside the lab's own repo1
    (with_local). 0600, owned by the lab OS user: it holds the S3 key, as a real one (templated from vault) does."""
    n = 2 if with_local else 1
    lab_home = lab_pgbackrest.home(cfg.root)
    host, _, default_port = endpoint.split("://", 1)[1].partition(":")
    lines = ["[global]", f"log-path={lab_home / 'log'}", f"lock-path={lab_home / 'lock'}",
             f"spool-path={lab_home / 'spool'}", "compress-type=lz4", "start-fast=y"]
    if io_timeout:  # pgBackRest retries an unreachable repository for io-timeout (60 s) per request by default
        lines.append(f"io-timeout={io_timeout}")
    if with_local:
        lines.append(f"repo1-path={lab_pgbackrest.repo_path(cfg.root)}")
    lines += [f"repo{n}-type=s3", f"repo{n}-path=/erlmcp", f"repo{n}-s3-bucket={S3_BUCKET}",
              f"repo{n}-s3-endpoint={host}", f"repo{n}-storage-port={port or default_port}",
              f"repo{n}-s3-region={S3_REGION}", f"repo{n}-s3-uri-style=path",
              f"repo{n}-storage-verify-tls=n",  # moto's certificate is made up; a real repository verifies
              # pgBackRest's advice for object stores: small files bundled, a few requests instead of one per file
              f"repo{n}-bundle=y",
              f"repo{n}-s3-key={key[0]}", f"repo{n}-s3-key-secret={key[1]}"]
    node = cfg.node(PRIMARY)
    lines += ["", f"[{lab_pgbackrest.STANZA}]", f"pg1-path={node.data_dir}", f"pg1-port={node.port}",
              f"pg1-user={lab.SUPERUSER}", ""]
    config = cfg.root / f"pgbackrest-{name}.conf"
    write_private(config, "\n".join(lines))  # created 0600: the key is never readable by others, even briefly
    return config


def archive_through(cfg: lab.LabConfig, config: Path | None) -> None:
    """Point the primary's archive_command at `config` (None: back to the lab's own) and reload."""
    with connect(cfg, PRIMARY) as conn:
        if config is None:
            conn.execute("ALTER SYSTEM RESET archive_command")
        else:
            node = cfg.node(PRIMARY)
            command = (f"pgbackrest --config={config} --stanza={lab_pgbackrest.STANZA} --pg1-path={node.data_dir} "
                       "archive-push %p")
            conn.execute(f"ALTER SYSTEM SET archive_command = '{command}'")
        conn.execute("SELECT pg_reload_conf()")

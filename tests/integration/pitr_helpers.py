"""Helpers of the point-in-time restore tests and of benchmarks/pitr.py: a writer that logs every acknowledged
insert with its commit time, the engines' parameters for a lab, copies of a lab's repository to break safely, and
the check that a restored copy holds exactly the rows committed at or before the target."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from runbook_helpers import DEADLINE, connect

from erlmcp_dr import lab, lab_pgbackrest
from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils import _pitr_backup, _pitr_restore, _pitr_verify  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._wait import wait_for  # noqa: E402
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

"""The lab's pgBackRest repository: WAL archiving and base backups of the lab's PostgreSQL (issue 21, docs/pitr.md).

One repository on disk per lab, `<lab root>/pgbackrest/repo`, one stanza (`erlmcp`) and one config file
(`<lab root>/pgbackrest/pgbackrest.conf`, 0600, owned by the lab OS user: pgBackRest must run as the user who runs
PostgreSQL, which refuses root). Every node archives with `archive_command` through `pgbackrest archive-push`,
naming its own data directory (`--pg1-path`): `%p` is relative to the data directory, and the stanza's pg1-path is
the primary of when the config was written, which a failover moves. A standby does not archive
(`archive_mode = on`, not `always`); the node that becomes primary does.

The lab's PostgreSQL listens on TCP only (no Unix socket), and pgBackRest 2.45 has no TCP host option for a local
cluster (`pg1-host` means SSH): the commands that connect (stanza-create, check, backup) run with PGHOST=127.0.0.1
and the lab's superuser in a passfile of their own (PGPASSFILE), which libpq reads.

lab/lifecycle.py calls three hooks: node_settings() (the archive settings in each node's postgresql.conf), up() (config,
repository, stanza-create + check, once the primary runs) and clone() (a copy of a lab template gets its own
repository: the template's, copied, with a config that names the copy's paths).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from erlmcp_dr.lab.config import (
    LAB_PASSWORD,
    SUPERUSER,
    LabConfig,
    LabNode,
    lab_os_user,
    make_owned_dir,
    write_private,
)

STANZA = "erlmcp"
PGBACKREST = "pgbackrest"
# Short, so that a quiet lab still archives its last writes within seconds (a point-in-time restore can only reach
# what is archived); a busy lab fills segments sooner anyway. The archive's lag under a light writer is this plus one
# archive-push: at 5 s its maximum was 5.03 s (benchmarks/results/2026-12-07-pitr-1gb-quiet-12.json), over issue
# 21's 5 s; at 3 s the bound holds with room for the push. docs/pitr.md says what a real cluster pays for it.
ARCHIVE_TIMEOUT = "3s"
COMMAND_TIMEOUT = 300


def home(root: Path) -> Path:
    return root / "pgbackrest"


def repo_path(root: Path) -> Path:
    return home(root) / "repo"


def config_path(root: Path) -> Path:
    return home(root) / "pgbackrest.conf"


def passfile_path(root: Path) -> Path:
    return home(root) / ".pgpass"


def _lab_root_of(node: LabNode) -> Path:
    return node.home.parent.parent  # <root>/pg/<node>


def node_settings(node: LabNode) -> list[str]:
    """Lines for the node's postgresql.conf: archive through pgBackRest into this lab's repository."""
    root = _lab_root_of(node)
    command = (f"{PGBACKREST} --config={config_path(root)} --stanza={STANZA} --pg1-path={node.data_dir} "
               f"archive-push %p")
    return [
        "archive_mode = on",
        f"archive_command = '{command}'",
        f"archive_timeout = '{ARCHIVE_TIMEOUT}'",
        # Each commit's time, as its WAL record holds it (pg_xact_commit_timestamp): what a restore to a time
        # is proven against.
        "track_commit_timestamp = on",
    ]


def config_text(root: Path, primary: LabNode) -> str:
    """The repository's config: paths under the lab root, the primary of now as pg1 (backup connects to it)."""
    return "\n".join([
        "# erlmcp.dr lab pgBackRest config (rewritten by `runbook lab up` and by lab copies)",
        "[global]",
        f"repo1-path={repo_path(root)}",
        f"log-path={home(root) / 'log'}",
        f"lock-path={home(root) / 'lock'}",
        f"spool-path={home(root) / 'spool'}",
        "log-level-file=info",
        "start-fast=y",
        # lz4: the lab pushes a segment every ARCHIVE_TIMEOUT while it is written to; gzip's CPU would show.
        "compress-type=lz4",
        "",
        f"[{STANZA}]",
        f"pg1-path={primary.data_dir}",
        f"pg1-port={primary.port}",
        f"pg1-user={SUPERUSER}",
        "",
    ])


def command_env(root: Path) -> dict[str, str]:
    """The environment pgBackRest's connecting commands need in the lab (TCP, the lab's superuser's passfile)."""
    return {"PGHOST": "127.0.0.1", "PGPASSFILE": str(passfile_path(root)), "PATH": os.environ.get("PATH", "")}


def write_config(cfg: LabConfig, primary: LabNode) -> None:
    root = cfg.root
    make_owned_dir(home(root), 0o700)
    for sub in ("repo", "log", "lock", "spool"):
        make_owned_dir(home(root) / sub, 0o700)
    write_private(config_path(root), config_text(root, primary))
    write_private(passfile_path(root), f"127.0.0.1:*:*:{SUPERUSER}:{LAB_PASSWORD}\n")


def run(cfg: LabConfig, *args: str, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """pgbackrest <args> as the lab OS user, with the lab's config; raises RuntimeError with its output."""
    if shutil.which(PGBACKREST) is None:
        raise RuntimeError("pgbackrest is not installed (the lab archives WAL through it): run scripts/setup.sh, "
                           "which installs Debian's pgbackrest, or apt-get install pgbackrest")
    user = lab_os_user()
    as_root = os.geteuid() == 0
    argv = [PGBACKREST, f"--config={config_path(cfg.root)}", f"--stanza={STANZA}", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=command_env(cfg.root),
                          cwd=str(home(cfg.root)), user=user.pw_uid if as_root else None,
                          group=user.pw_gid if as_root else None)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed (exit {done.returncode}): "
                           f"{(done.stderr or done.stdout).strip()[-2000:]}")
    return done


def up(cfg: LabConfig, primary: LabNode) -> list[str]:
    """Config and repository in place, the stanza created (idempotent) and checked (a WAL switch archived); a
    warning instead of a failure when it cannot be (a lab built before it archived through pgBackRest: its nodes'
    postgresql.conf has no archive_command until it is rebuilt), so `lab up` still brings the rest up."""
    write_config(cfg, primary)
    try:
        run(cfg, "stanza-create")
        run(cfg, "check")
    except RuntimeError as exc:
        return [f"the lab's pgBackRest stanza is not usable ({exc}); pg_backup and pg_restore need it: a lab built "
                f"before it archived through pgBackRest is rebuilt by `runbook lab reset`"]
    return []


def clone(template: LabConfig, cfg: LabConfig, primary: LabNode) -> None:
    """A copy's own repository: the template's (its stanza, its backups and WAL, same system identifier), copied,
    and a config naming the copy's paths; nothing of the copy ever writes into the template's."""
    source = repo_path(template.root)
    make_owned_dir(home(cfg.root), 0o700)
    if source.is_dir():
        subprocess.run(["cp", "-a", "--reflink=auto", str(source), str(repo_path(cfg.root))],
                       check=True, capture_output=True, timeout=COMMAND_TIMEOUT)
    write_config(cfg, primary)


def inventory_vars(root: str) -> dict[str, str]:
    """What pg_backup and pg_restore read from the inventory (root: the lab's path, or the shipped file's
    expression for it)."""
    return {"pg_backrest_stanza": STANZA, "pg_backrest_config": f"{root}/pgbackrest/pgbackrest.conf"}


SCRATCH_GLOB = "pitr-*"  # pg_restore's default scratch folders (<lab root>/pg/pitr-<UTC time>), and the tests'


def down_scratch(cfg: LabConfig, timeout: float) -> list[str]:
    """Stop the scratch instances pg_restore left running in this lab (their postmaster serving a folder
    <lab root>/pg/pitr-*), by PID; their names."""
    from erlmcp_dr.lab.config import stop_pid

    stopped = []
    for folder in sorted((cfg.root / "pg").glob(SCRATCH_GLOB)):
        try:
            pid = int((folder / "postmaster.pid").read_text().splitlines()[0])
            serving = os.path.realpath(os.readlink(f"/proc/{pid}/cwd")) == os.path.realpath(folder)
        except (OSError, ValueError, IndexError):
            continue
        if serving:
            stop_pid(pid, timeout)
            stopped.append(folder.name)
    return stopped

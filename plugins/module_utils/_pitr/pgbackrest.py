# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup driver of pg_backup and pg_restore: pgBackRest's command line, behind one small interface.

We drive pgBackRest (full/diff/incr backups, the WAL archive, verify, restore with recovery targets) and write no
backup code of our own. The engines (_pitr_backup, _pitr_restore) talk to a BackupDriver only:

  info()                      the stanza's backups and archive ids (pgBackRest's `info --output=json`)
  check(timeout)              the stanza exists and archive_command reaches the repository (a WAL switch archived)
  backup(kind)                take a full/diff/incr backup; its label
  archive_listing(archive_id) every file in the archive (segments, history files): the input of the WAL gap check
  history(archive_id, tli)    a timeline history file's text
  verify(label)               whether the repository's own checksums hold for the backup (and its WAL)
  restore(label, target, dir) write the backup into an empty directory (or, delta, over a stopped copy of the
                              cluster) with recovery set to stop at the target
  expire(keep_full)           count retention of full backups, with the WAL they need

so a second driver (WAL-G, Barman) would implement these eight and nothing else changes.

pgBackRest must run as the OS user who owns the cluster (PostgreSQL refuses root): as root, every command runs as
the owner of the data directory named by `pg_data_dir`. Commands that connect to PostgreSQL get PGHOST (pgBackRest
2.45 has no TCP host option for a local cluster; `pg1-host` means SSH) and the password through a temporary
passfile (PGPASSFILE, 0600, removed afterwards), never on a command line or in the environment.

Private to the collection. Python 3.8 syntax at most: module_utils run on managed hosts.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.server import Server, _demote_to, data_dir_owner

DEFAULT_TIMEOUT = 3600
# pgBackRest's own messages for the failures an operator meets, and the kind each is reported as.
# First match wins: "denied" comes first because S3's InvalidAccessKeyId says the key "does not exist".
_KINDS = (
    ("denied", ("permission denied", "accessdenied", "403 (forbidden)", "invalidaccesskeyid",
                "signaturedoesnotmatch")),
    ("unreachable", ("hostconnecterror", "unable to connect to '", "could not resolve host", "unable to get address")),
    ("stanza_missing", ("does not exist", "unable to load info file", "missing stanza path",
                        "stanza-create")),
    ("archive", ("was not archived before", "archive_command", "archive-push")),
    ("corrupt", ("checksum", "invalid", "unable to decompress", "format")),
    ("refused", ("connection refused", "unable to connect", "could not connect")),
)
# What an operator does about a repository that refuses or cannot be reached (pgBackRest's option names).
_REPO_ADVICE = {
    "denied": "check its credentials (repo%(n)s-s3-key, repo%(n)s-s3-key-secret in the pgBackRest config, kept in "
              "vault) and the bucket's policy",
    "unreachable": "check its endpoint (repo%(n)s-s3-endpoint, repo%(n)s-storage-port) and the network to it",
}


class BackupError(ModuleFailure):
    """A driver failure, worded for the operator, with a kind (stanza_missing, archive, denied, corrupt, ...)."""


class BackupDriver(object):
    """The interface the PITR engines use; see the module's docstring."""

    name = "none"

    def info(self):
        raise NotImplementedError

    def check(self, timeout):
        raise NotImplementedError

    def backup(self, kind):
        raise NotImplementedError

    def archive_listing(self, archive_id):
        raise NotImplementedError

    def history(self, archive_id, timeline):
        raise NotImplementedError

    def verify(self, label):
        raise NotImplementedError

    def restore(self, label, target, directory):
        raise NotImplementedError

    def expire(self, keep_full):
        raise NotImplementedError


class PgBackRest(BackupDriver):
    """pgBackRest's command line for one stanza. params: stanza, config (file), pg_data_dir (whose owner runs it),
    pg_port, login_host/login_user/login_password (for the commands that connect), pgbackrest (the program),
    command_timeout."""

    name = "pgbackrest"

    def __init__(self, params):
        self.params = params
        self.stanza = params["stanza"]
        self.program = params.get("pgbackrest") or "pgbackrest"
        self.timeout = params.get("command_timeout") or DEFAULT_TIMEOUT

    # -- running it ---------------------------------------------------------------------------------------------

    def describe(self):
        repo = ", repo%s" % self.params["repo"] if self.params.get("repo") else ""
        return "stanza %s (%s%s)" % (self.stanza, self.params.get("config") or "pgBackRest's default config", repo)

    def _repo_args(self):
        """The repository a command reads or writes when the config names several (repo1 on disk, repo2 on S3, ...):
        pgBackRest's own --repo. Without it pgBackRest backs up into repo1 and restores from the first that holds the
        backup; archive-push and check always serve every repository."""
        return ["--repo=%d" % self.params["repo"]] if self.params.get("repo") else []

    def _base_args(self):
        args = [self.program]
        if self.params.get("config"):
            args.append("--config=%s" % self.params["config"])
        args += ["--stanza=%s" % self.stanza, "--log-level-console=warn", "--log-level-stderr=off"]
        return args

    def _pg_args(self):
        """The cluster the connecting commands read: the data directory and port of the node the task targets."""
        args = []
        if self.params.get("pg_data_dir"):
            args.append("--pg1-path=%s" % self.params["pg_data_dir"])
        port = self.params.get("pg_port") or self.params.get("login_port")
        if port:
            args.append("--pg1-port=%s" % port)
        if self.params.get("login_user"):
            args.append("--pg1-user=%s" % self.params["login_user"])
        return args

    def run(self, args, connect=False, timeout=None, what=None):
        """pgbackrest <args> as the cluster's owner; stdout. A failure raises BackupError naming the command."""
        argv = self._base_args() + list(args)
        env = dict(os.environ)
        preexec, owner = None, None
        if self.params.get("pg_data_dir"):
            owner = data_dir_owner(self.params["pg_data_dir"])
            if os.geteuid() == 0 and owner[0] != 0:
                preexec = _demote_to(owner[0], owner[1])
                env["HOME"] = "/"
        passfile = None
        try:
            if connect:
                env["PGHOST"] = self.params.get("login_host") or "127.0.0.1"
                if self.params.get("login_password"):
                    # The one temp passfile helper (0600, owned by the data directory's owner), as pg_rewind gets it.
                    passfile = Server(self.params["pg_data_dir"]).temp_passfile(self.params["login_password"])
                    env["PGPASSFILE"] = passfile
            try:
                # Not AnsibleModule.run_command: it cannot run as the cluster's owner (preexec_fn) nor stop at a
                # deadline, and this engine has no module object.
                proc = subprocess.run(  # pylint: disable=ansible-bad-function
                    argv, env=env, preexec_fn=preexec, cwd="/", timeout=timeout or self.timeout,
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    universal_newlines=True, check=False)
            except subprocess.TimeoutExpired:
                raise BackupError("%s did not finish within %ss (command_timeout)"
                                  % (" ".join(argv[3:4] + list(args[:1])), timeout or self.timeout),
                                  error_kind="timeout") from None
            except OSError as exc:
                raise BackupError("cannot run %s: %s (install pgBackRest, or set pgbackrest to its path)"
                                  % (self.program, exc.strerror), error_kind="other") from None
        finally:
            if passfile:
                os.unlink(passfile)
        if proc.returncode != 0:
            output = (proc.stdout + "\n" + proc.stderr).strip()
            raise BackupError("pgbackrest %s failed for %s (exit %s): %s"
                              % (what or args[-1], self.describe(), proc.returncode, _tail(output)),
                              error_kind=kind_of(output), pgbackrest_exit=proc.returncode)
        return proc.stdout

    # -- the interface ------------------------------------------------------------------------------------------

    def info(self):
        text = self.run(self._repo_args() + ["--output=json", "info"])
        stanzas = json.loads(text or "[]")
        for stanza in stanzas:
            status = stanza.get("status") or {}
            if stanza.get("name") == self.stanza and status.get("code") not in (0, 2):  # 2: no backup yet
                _raise_repo_problem(stanza, self.describe())
                raise BackupError("pgbackrest info for %s: %s (code %s); create the stanza with pgbackrest "
                                  "stanza-create, or fix the repository (pgbackrest check)"
                                  % (self.describe(), status.get("message"), status.get("code")),
                                  error_kind="stanza_missing" if status.get("code") == 1 else "other")
        return stanzas

    def check(self, timeout):
        self.run(self._pg_args() + ["--archive-timeout=%s" % timeout, "check"], connect=True,
                 timeout=timeout + 60)

    def backup(self, kind):
        before = set(b["label"] for b in _backups(self.info()))
        self.run(self._pg_args() + self._repo_args() + ["--type=%s" % kind, "backup"], connect=True)
        new = [b for b in _backups(self.info()) if b["label"] not in before]
        if len(new) != 1:
            raise BackupError("pgbackrest backup ended without one new backup in %s (new: %s)"
                              % (self.describe(), [b["label"] for b in new]))
        return new[0]

    def archive_listing(self, archive_id):
        text = self.run(self._repo_args() + ["--output=json", "--recurse", "repo-ls",
                                             "archive/%s/%s" % (self.stanza, archive_id)], what="repo-ls")
        listing = json.loads(text or "{}")
        return sorted(path for path, entry in listing.items() if entry.get("type") == "file")

    def history(self, archive_id, timeline):
        """The history file the archive listing names for a timeline (`timeline`: its path in the listing)."""
        return self.run(self._repo_args() + ["repo-get", "archive/%s/%s/%s" % (self.stanza, archive_id, timeline)],
                        what="repo-get")

    def verify(self, label):
        """pgBackRest 2.45's verify has no --set: it checks the whole repository; the result is read for this
        backup's line ("backup: <label>, status: valid") and its archive id's WAL."""
        text = self.run(self._repo_args() + ["--output=text", "--verbose", "verify"], what="verify")
        return parse_verify(text, label)

    def restore(self, label, target, directory, delta=False, action="pause", timeline=None):
        """delta: rewrite only the files that differ (pgBackRest's --delta; the directory holds a copy of the
        cluster, e.g. the live primary's, stopped); action: what recovery does at the target (pause, promote);
        timeline: the timeline recovery follows (default PostgreSQL's: the newest in the archive)."""
        args = self._repo_args() + ["--pg1-path=%s" % directory, "--set=%s" % label]
        if delta:
            args.append("--delta")
        if target["type"] != "latest":
            args += ["--type=%s" % target["type"], "--target=%s" % target["value"], "--target-action=%s" % action]
        if timeline:
            args.append("--target-timeline=%d" % timeline)
        self.run(args + ["restore"])

    def expire(self, keep_full):
        self.run(self._repo_args() + ["--repo%d-retention-full=%d" % (self.params.get("repo") or 1, keep_full),
                                      "expire"])


def _raise_repo_problem(stanza, described):
    """A repository that denied access or could not be reached, named with what pgBackRest said (the first line
    and S3's own error code) and what to check; nothing else is tried."""
    for repo in stanza.get("repo") or []:
        message = (repo.get("status") or {}).get("message") or ""
        kind = kind_of(message)
        if kind in _REPO_ADVICE:
            raise BackupError("the repository repo%s of %s %s: %s; %s. Nothing was read or changed"
                              % (repo.get("key"), described,
                                 "denied access" if kind == "denied" else "cannot be reached",
                                 _first_line_and_s3_code(message), _REPO_ADVICE[kind] % {"n": repo.get("key")}),
                              error_kind=kind, repo=repo.get("key"))


_S3_ERROR_RE = re.compile(r"<Code>([^<]+)</Code>\s*<Message>([^<]+)</Message>")


def _first_line_and_s3_code(message):
    first = message.strip().splitlines()[0] if message.strip() else "(no message)"
    s3 = _S3_ERROR_RE.search(message)
    return "%s (S3: %s, %s)" % (first.rstrip(":"), s3.group(1), s3.group(2)) if s3 else first


def _backups(stanzas):
    found = []
    for stanza in stanzas:
        found.extend(stanza.get("backup") or [])
    return found


def parse_verify(text, label):
    """{ok, status, line, archive_problems, output} of pgBackRest's verify text (--verbose) for one backup label:
    ok only when the backup's own line says "status: valid"."""
    line, problems = None, []
    for raw in (text or "").splitlines():
        stripped = raw.strip()
        if stripped.startswith("backup: %s," % label):
            line = stripped
        counts = _COUNTS_RE.match(stripped)
        if counts and any(int(n) for n in counts.groups()):
            problems.append(stripped)
    status = line.split("status:", 1)[1].split(",", 1)[0].strip() if line and "status:" in line else None
    return {"ok": status == "valid", "status": status or "not listed", "line": line, "problems": problems,
            "output": _tail(text)}


_COUNTS_RE = re.compile(r"^missing: (\d+), checksum invalid: (\d+), size invalid: (\d+), other: (\d+)$")


def kind_of(output):
    lowered = (output or "").lower()
    for kind, needles in _KINDS:
        if any(needle in lowered for needle in needles):
            return kind
    return "other"


def _tail(text, limit=1500):
    text = (text or "").strip()
    return text if len(text) <= limit else "..." + text[-limit:]

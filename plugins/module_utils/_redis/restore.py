# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine of redis_restore: a verified backup from a directory store back into a Redis primary, by the
AOF-safe sequence (a restored RDB is never hidden by an old AOF: redis/redis#12484, #12098).

1. choose the backup (id, latest, or newest before a time); verify its sha256, redis-check-rdb and that the
   server can load its RDB version - before touching the server;
2. pause writes (CLIENT PAUSE WRITE), switch AOF off and persist that (CONFIG SET appendonly no, CONFIG REWRITE),
   SHUTDOWN SAVE: the current dataset is now a complete dump.rdb;
3. the rollback point: dump.rdb and the AOF directory moved aside into <dir>/erlmcp-dr-rollback-<time>/;
4. the backup copied into place (temp + rename), the server started (start_command) with AOF off: it loads the
   RDB; wait loading:0; verify keys loaded against the backup's metadata;
5. CONFIG SET appendonly yes, wait for the AOF rewrite to finish, CONFIG REWRITE (persists appendonly yes);
6. wait until every replica the primary had is online at its offset.
If the verification fails, the rollback point is put back by the same sequence and the run says so.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time

from ansible_collections.erlmcp.dr.plugins.module_utils._redis import client as rd
from ansible_collections.erlmcp.dr.plugins.module_utils._redis import store as store_mod
from ansible_collections.erlmcp.dr.plugins.module_utils._common.files import write_atomic
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import WaitTimeout, wait_for

MARKER = "erlmcp-dr-restore.json"
JOURNAL = "restore.json"
LOCK = ".erlmcp-dr-restore.lock"
JOURNAL_BACKUP_KEYS = ("id", "sha256", "rdb_keys", "keys_per_db", "keys_exact", "samples")
ROLLBACK_PREFIX = "erlmcp-dr-rollback-"
RUN_MARKER = "ERLMCP_DR_RUN"  # how the controller's run guard finds the run's processes (src/erlmcp_dr/runner.py)
POSITIVE = ("wait_timeout", "poll_interval", "check_timeout", "connect_timeout", "pause_timeout")


def run(params, check_mode=False, diff=False, warn=None):
    held = []
    staging = []
    try:
        return _run(params, check_mode, held, staging)
    finally:
        for handle in held:
            handle.close()
        for folder in staging:
            shutil.rmtree(folder, ignore_errors=True)


def _run(params, check_mode, held, staging):
    _validate(params)
    started = time.monotonic()
    conn_params = rd.connection_params(params)
    facts = dict(changed=False, backup_id=None, rolled_back=False, rollback_dir=None, resumed_from=None,
                 durations={})
    with rd.translate_errors(facts, "while restoring %s" % rd.endpoint(conn_params)):
        store = store_mod.store_from(params)
        facts["store"] = store.kind
        metadata = choose(store, params.get("backup") or "latest", parse_time(params.get("before"), "before"))
        facts.update(backup_id=metadata["id"], backup=metadata,
                     data_loss_seconds=int(time.time()) - metadata["lastsave"])
        verify_sha256(store, metadata, params.get("hmac_key"))
        local = _fetch(store, metadata, params, staging, facts)
        client = _connect_or_resume(params, conn_params, check_mode, facts, held)
        if client is None:  # check mode, a stopped server with an unfinished restore: it would be finished
            return facts
        with client:
            node = rd.read_node(client)
            if not check_mode and node.get("dir") and os.path.isdir(node["dir"]) and not held:
                held.append(_lock(node["dir"], conn_params))
            journal = _unfinished(node["dir"])
            if journal is not None:
                facts.update(changed=True, resumed_from=journal["phase"], rollback_dir=journal["folder"])
                if check_mode:
                    return facts
                _resume_running(client, journal, params, conn_params, facts)
                node = rd.read_node(client)
            _preconditions(node, metadata, conn_params, local)
            verify_rdb(local, metadata, params, facts)
            facts.setdefault("keys_before", node["keys_per_db"])
            if _holds_already(node, metadata):
                facts.update(keys_after=node["keys_per_db"])
                facts["durations"]["total"] = round(time.monotonic() - started, 3)
                return facts
            facts["changed"] = True
            if check_mode:
                return facts
            journal = _begin(node, metadata, store, local, facts)
            _stop_saving(client, params, conn_params, facts)
        _sequence(journal, params, conn_params, facts)
    facts["durations"]["total"] = round(time.monotonic() - started, 3)
    return facts


def _connect_or_resume(params, conn_params, check_mode, facts, held):
    """A client; or, when nothing listens and data_dir holds an unfinished restore, that restore finished first."""
    client, error, kind = rd.try_connect(conn_params)
    if client is not None:
        return client
    journal = _unfinished(params.get("data_dir")) if kind == "refused" and params.get("data_dir") else None
    if journal is None:
        raise rd.RedisError(error + ("" if params.get("data_dir") or kind != "refused" else
                                     "; if a restore was cut off while the server was stopped, set data_dir to "
                                     "its data directory to finish it (data_dir)"), kind=kind)
    facts.update(changed=True, resumed_from=journal["phase"], rollback_dir=journal["folder"])
    if check_mode:
        return None
    held.append(_lock(journal["dir"], conn_params))
    journal = _unfinished(journal["dir"])  # read again under the lock: another run may have finished it
    if journal is not None:
        _sequence(journal, params, conn_params, facts)
    return rd.connect(conn_params)


def _lock(data_dir, conn_params):
    """One restore per data directory at a time: an flock the kernel releases when the process ends (a killed
    run holds it no longer)."""
    handle = open(os.path.join(data_dir, LOCK), "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.close()
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise rd.RedisError("another restore of %s (data directory %s) is running; nothing was touched: wait for "
                                "it to finish, then run again" % (rd.endpoint(conn_params), data_dir)) from None
        raise
    return handle


def _validate(params):
    rd.check_positive(params, POSITIVE)
    if not params.get("start_command"):
        raise ModuleFailure("start_command is empty: expected the command that starts this redis-server (for "
                            "example [systemctl, start, redis-server]) (start_command)")


# ---------------------------------------------------------------- choosing and verifying the backup


def parse_time(value, parameter):
    """A Unix time (digits) or an ISO 8601 time (UTC when it names no zone) as a Unix time; None stays None."""
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        when = datetime.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise ModuleFailure("%s is %r: expected a Unix time or an ISO 8601 time such as 2026-11-25T12:00:00Z (%s)"
                            % (parameter, text, parameter)) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return int((when - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)).total_seconds())


def choose(store, backup, before=None):
    """The backup's metadata: by id, or the newest verified one (before `before`, a Unix time, when given)."""
    backups = store.list()
    if not backups:
        raise rd.RedisError("the store %s holds no backup (%s)" % (store.path, _store_param(store)))
    if backup != "latest":
        for metadata in backups:
            if metadata["id"] == backup:
                return metadata
        raise rd.RedisError("no backup %r in the store %s; it holds %s (backup)"
                            % (backup, store.path, ", ".join(b["id"] for b in backups[-10:])))
    candidates = [b for b in backups if b.get("verified") and (before is None or b["lastsave"] < before)]
    if not candidates:
        raise rd.RedisError("the store %s holds no verified backup%s (backup, before, %s)"
                            % (store.path, " saved before %s" % _iso(before) if before is not None else "",
                               _store_param(store)))
    return candidates[-1]


def _store_param(store):
    return "store_dir" if store.kind == "directory" else "s3_bucket, s3_prefix"


def verify_sha256(store, metadata, hmac_key=None):
    """The stored copy exists, was verified when made and still has its sha256 (and, given the key, its metadata
    its HMAC): before the server is touched."""
    path = store.rdb_path(metadata["id"])
    problem = store_mod.hmac_problem(metadata, hmac_key)
    if problem:
        raise rd.RedisError("%s; nothing was touched (backup)" % problem)
    if not metadata.get("verified"):
        raise rd.RedisError("backup %s is not verified (its copy failed redis-check-rdb when it was made): choose "
                            "another (backup)" % metadata["id"])
    digest = store.stored_sha256(metadata["id"])
    if digest is None:
        raise rd.RedisError("backup %s has metadata but its file %s is missing (backup)" % (metadata["id"], path))
    if digest != metadata.get("sha256"):
        raise rd.RedisError("backup %s is damaged: the sha256 of %s is %s, its metadata says %s; nothing was touched "
                            "(backup)" % (metadata["id"], path, digest, metadata.get("sha256")))


def _fetch(store, metadata, params, staging, facts):
    """A local copy of the backup's RDB to check and load: the stored copy itself for a directory store; for S3,
    a download into a private temp folder (staging_dir), its sha256 checked against the metadata."""
    if store.kind == "directory":
        return store.local_rdb(metadata, None)
    began = time.monotonic()
    folder = tempfile.mkdtemp(prefix="erlmcp-dr-fetch-", dir=params.get("staging_dir") or None)
    staging.append(folder)
    path = store.local_rdb(metadata, folder)
    facts["durations"]["fetch"] = round(time.monotonic() - began, 3)
    return path


def verify_rdb(path, metadata, params, facts):
    """redis-check-rdb on the local copy of the backup, before the server is touched."""
    began = time.monotonic()
    check = store_mod.check_rdb(params["check_rdb_path"], path, params["check_timeout"])
    if not check["ok"]:
        raise rd.RedisError("backup %s fails redis-check-rdb (exit %s): %s; nothing was touched (backup)"
                            % (metadata["id"], check["returncode"], check["reason"]))
    facts["durations"]["verify"] = round(time.monotonic() - began, 3)


def _preconditions(node, metadata, conn_params, path):
    where = rd.endpoint(conn_params)
    if node["role"] != "primary":
        raise rd.RedisError("%s is a replica of %s:%s: restore the primary, its replicas follow (login_host, "
                            "login_port)" % (where, node["upstream_host"], node["upstream_port"]))
    can_load = node["rdb_version"]
    version = store_mod.rdb_file_version(path)
    if can_load is not None and version is not None and version > can_load:
        values = (metadata["id"], version, metadata.get("redis_version"), node["redis_version"], where, can_load)
        raise rd.RedisError("backup %s holds RDB version %s (written by Redis %s), newer than Redis %s at %s loads "
                            "(RDB %s); nothing was touched (backup)" % values)
    if not node.get("config_file"):
        raise rd.RedisError("%s was started without a config file, so CONFIG REWRITE cannot persist appendonly across "
                            "the restart the restore needs; start it with one (start_command) and run again" % where)
    if not node.get("dir") or not os.path.isdir(node["dir"]):
        raise rd.RedisError("the data directory %s of %s is not visible from here: run the module on the Redis host "
                            "(delegate_to)" % (node.get("dir"), where))
    for name in ("rdb_bgsave_in_progress", "aof_rewrite_in_progress"):
        if node["persistence"][name]:
            raise rd.RedisError("%s has %s:1: another save or restore is running; try again once it has finished"
                                % (where, name))


def _holds_already(node, metadata):
    """The server holds this backup's dataset, restored by this module and unchanged since (same process)."""
    try:
        with open(os.path.join(node["dir"], MARKER)) as handle:
            marker = json.load(handle)
    except (OSError, ValueError):
        return False
    return (marker.get("backup_id") == metadata["id"] and marker.get("sha256") == metadata["sha256"]
            and marker.get("run_id") == node["run_id"] and node["keys_per_db"] == marker.get("keys_per_db")
            and node["persistence"]["rdb_changes_since_last_save"] == 0 and node["persistence"]["aof_enabled"])


# ---------------------------------------------------------------- the sequence


def _stop_saving(client, params, conn_params, facts):
    """Pause writes, AOF off (persisted), SHUTDOWN SAVE: dump.rdb is the complete current dataset."""
    began = time.monotonic()
    client.execute_command("CLIENT", "PAUSE", int(params["pause_timeout"] * 1000), "WRITE")
    client.config_set("appendonly", "no")
    rd.config_rewrite(client)
    try:
        client.shutdown(save=True)
    except Exception as exc:  # redis-py raises when the server refuses; a closed connection means it stopped
        if not rd.is_driver_error(exc) or "connection" not in type(exc).__name__.lower():
            raise
    facts["durations"]["stop"] = round(time.monotonic() - began, 3)


def _begin(node, metadata, store, local, facts):
    """The rollback folder and its journal (phase "stopping"), written before the server is stopped. A backup
    fetched from S3 is kept in the folder, so a run cut off later can still place it."""
    folder = os.path.join(node["dir"], ROLLBACK_PREFIX + datetime.datetime.now(datetime.timezone.utc)
                          .strftime("%Y%m%dT%H%M%S%fZ"))
    os.mkdir(folder, 0o700)
    _chown_like(folder, node["dir"])
    backup_path = local
    if store.kind != "directory":
        backup_path = os.path.join(folder, "backup-%s.rdb" % metadata["id"])
        store_mod.copy_atomic(local, backup_path)
    journal = dict(folder=folder, dir=node["dir"], dbfilename=node["dbfilename"],
                   appenddirname=node["appenddirname"] or "appendonlydir", backup_path=backup_path,
                   backup=dict((k, metadata.get(k)) for k in JOURNAL_BACKUP_KEYS),
                   replicas=[r for r in node["replicas"] if r["state"] == "online"], moved=[], phase="stopping")
    _save(journal)
    facts["rollback_dir"] = folder
    return journal


def _save(journal, phase=None):
    if phase:
        journal["phase"] = phase
    write_atomic(os.path.join(journal["folder"], JOURNAL), json.dumps(journal, indent=2) + "\n", 0o600)


def _unfinished(data_dir):
    """The newest restore journal under data_dir that is not finished, or None."""
    if not data_dir or not os.path.isdir(data_dir):
        return None
    for name in sorted(os.listdir(data_dir), reverse=True):
        if name.startswith(ROLLBACK_PREFIX):
            try:
                with open(os.path.join(data_dir, name, JOURNAL)) as handle:
                    journal = json.load(handle)
            except (OSError, ValueError):
                continue
            return journal if journal.get("phase") not in ("done", "abandoned") else None
    return None


def _resume_running(client, journal, params, conn_params, facts):
    """An unfinished restore found with the server up: finish it, or (never stopped) give it up."""
    if journal["phase"] == "stopping":  # the server was never stopped: its dataset is intact; AOF back on
        if not int(client.info("persistence").get("aof_enabled", 0)):
            _aof_on(client, params, conn_params)
        _save(journal, "abandoned")
        return
    if journal["phase"] in ("started", "rolling_back"):
        _sequence(journal, params, conn_params, facts)
        return
    # set aside or placed, yet running (started by someone else): stop it and carry on from there
    client.execute_command("CONFIG", "SET", "appendonly", "no")
    try:
        client.shutdown(nosave=True)
    except Exception as exc:
        if not rd.is_driver_error(exc):
            raise
    _sequence(journal, params, conn_params, facts)


def _sequence(journal, params, conn_params, facts):
    """From the journal's phase to the end: set aside, place, start and load, verify, AOF on, replicas."""
    facts["rollback_dir"] = journal["folder"]
    if journal["phase"] == "rolling_back":  # cut off while putting the rollback point back: finish that
        _finish_roll_back(params, conn_params, journal, facts)
    if journal["phase"] == "stopping":
        _wait(lambda: rd.try_connect(conn_params)[2] == "refused", params, "%s to stop" % rd.endpoint(conn_params))
        _set_aside(journal)
        _save(journal, "set_aside")
    if journal["phase"] == "set_aside":
        _place(journal["backup_path"], journal)
        _save(journal, "placed")
    # "started" too: a run cut off while the server loaded may have lost that server with it (issue 16 row 3);
    # starting it again loads the placed backup once more, and what it loads is verified below all the same.
    if journal["phase"] in ("placed", "started"):
        if rd.try_connect(conn_params)[2] == "refused":
            try:
                _start(params, journal)
            except rd.RedisError as exc:
                raise rd.RedisError("%s; %s is stopped with backup %s in place and the dataset from before the restore "
                                    "kept in %s: run the restore again (with data_dir %s) to finish it"
                                    % (exc, rd.endpoint(conn_params), journal["backup"]["id"], journal["folder"],
                                       journal["dir"])) from None
        _save(journal, "started")
    problem = _load_and_verify(params, conn_params, journal, facts)
    if problem:
        _roll_back(params, conn_params, journal, facts, problem)
    _save(journal, "done")
    facts["replicas"] = _wait_replicas(params, conn_params, journal["replicas"], facts)


def _set_aside(journal):
    """The current dataset (the RDB SHUTDOWN SAVE wrote, the AOF directory, the marker) into the rollback folder."""
    for name in _dataset_names(journal):
        source, kept = os.path.join(journal["dir"], name), os.path.join(journal["folder"], name)
        if os.path.exists(source) and not os.path.exists(kept):
            os.rename(source, kept)
        if os.path.exists(kept) and name not in journal["moved"]:
            journal["moved"].append(name)


def _dataset_names(journal):
    return (journal["dbfilename"], journal["appenddirname"], MARKER)


def _place(source, node):
    dest = os.path.join(node["dir"], node["dbfilename"])
    store_mod.copy_atomic(source, dest)
    _chown_like(dest, node["dir"])


def _chown_like(path, like):
    if os.geteuid() == 0:
        owner = os.stat(like)
        os.chown(path, owner.st_uid, owner.st_gid)


def _start(params, node):
    owner = os.stat(node["dir"])
    as_owner = dict(user=owner.st_uid, group=owner.st_gid) if os.geteuid() == 0 else {}
    try:
        # Not AnsibleModule.run_command: the engine has no module object, and the server must start as the
        # owner of its data directory (user=, group=) within wait_timeout.
        # Without the run's marker: the server is no process of the run, whatever kills the run must spare it.
        proc = subprocess.run(  # pylint: disable=ansible-bad-function
            list(params["start_command"]), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, timeout=params["wait_timeout"], check=False, env=_server_env(), **as_owner)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise rd.RedisError("start_command %s failed: %s (start_command)" % (params["start_command"], exc)) from None
    if proc.returncode != 0:
        raise rd.RedisError("start_command %s exited %s: %s (start_command)"
                            % (params["start_command"], proc.returncode, proc.stdout.decode("utf-8", "replace")[-500:]))


def _server_env():
    """This process's environment without the controller's run marker (erlmcp_dr.runner.RUN_MARKER)."""
    return dict((k, v) for k, v in os.environ.items() if k != RUN_MARKER)


def _loaded(conn_params):
    client, _error, _kind = rd.try_connect(conn_params)
    if client is None:
        return None
    with client:
        info = client.info("persistence")
        return None if int(info.get("loading", 0)) else info


def _load_and_verify(params, conn_params, journal, facts):
    """Wait for the started server to load (AOF off: the RDB), check what it loaded, AOF on; a problem or None."""
    began = time.monotonic()
    info = _wait(lambda: _loaded(conn_params), params, "%s to load the backup" % rd.endpoint(conn_params))
    facts["durations"]["load"] = round(time.monotonic() - began, 3)
    client = rd.connect(conn_params)
    with client:
        keys = rd.keyspace(client.info("keyspace"))
        facts["keys_after"] = keys
        problem = _verify_loaded(journal["backup"], keys, info)
        if problem:
            return problem
        wrong = rd.compare_samples(conn_params, journal["backup"].get("samples") or {})
        facts["sampled_keys"] = sum(len(v) for v in (journal["backup"].get("samples") or {}).values())
        if wrong:
            return "%s of %s sampled values differ from the backup's: %s" % (
                len(wrong), facts["sampled_keys"], ", ".join(wrong[:5]))
        began = time.monotonic()
        _aof_on(client, params, conn_params)
        facts["durations"]["aof_rewrite"] = round(time.monotonic() - began, 3)
        after = rd.read_node(client)
    write_atomic(os.path.join(journal["dir"], MARKER), json.dumps(dict(
        backup_id=journal["backup"]["id"], sha256=journal["backup"]["sha256"], run_id=after["run_id"],
        keys_per_db=after["keys_per_db"], restored_at=_iso(time.time()))) + "\n", 0o600)
    return None


def _verify_loaded(metadata, keys, info):
    loaded = int(info.get("rdb_last_load_keys_loaded", -1))
    expected = metadata.get("rdb_keys")
    if expected is not None and loaded >= 0 and loaded != expected:
        return "the server loaded %s keys, the backup holds %s" % (loaded, expected)
    if metadata.get("keys_exact") and keys != metadata.get("keys_per_db"):
        return "keys per database are %s, the backup's metadata says %s" % (keys, metadata.get("keys_per_db"))
    return None


def _aof_on(client, params, conn_params):
    client.config_set("appendonly", "yes")

    def rewritten():
        info = client.info("persistence")
        if int(info.get("aof_rewrite_in_progress", 0)) or int(info.get("aof_rewrite_scheduled", 0)):
            return None
        if info.get("aof_last_bgrewrite_status") != "ok":
            raise rd.RedisError("the AOF rewrite on %s failed (aof_last_bgrewrite_status:%s): see its log"
                                % (rd.endpoint(conn_params), info.get("aof_last_bgrewrite_status")))
        return int(info.get("aof_enabled", 0)) == 1

    _wait(rewritten, params, "the AOF rewrite on %s" % rd.endpoint(conn_params))
    rd.config_rewrite(client)


def _roll_back(params, conn_params, journal, facts, problem):
    """Put the rollback point back by the same AOF-safe sequence, then fail saying so.

    Journaled first (phase rolling_back, with the problem): a run cut off while rolling back is finished by the
    next run (_finish_roll_back, every step of which can be run again), which never loads, verifies or deletes as
    if the backup were still the dataset in place."""
    journal["problem"] = problem
    _save(journal, "rolling_back")
    _remove_placed_backup(journal)
    _finish_roll_back(params, conn_params, journal, facts)


def _remove_placed_backup(journal):
    """The backup's RDB placed in the data directory goes, unless the rollback point has an RDB of its own to
    replace it (the rename does that atomically). Done once, recorded, before anything is moved back."""
    if journal.get("backup_removed"):
        return
    placed = os.path.join(journal["dir"], journal["dbfilename"])
    if not os.path.exists(os.path.join(journal["folder"], journal["dbfilename"])) and os.path.exists(placed):
        os.unlink(placed)
    journal["backup_removed"] = True
    _save(journal)


def _kept(journal):
    """The names of the rollback point still in the rollback folder (not yet moved back)."""
    return [name for name in _dataset_names(journal) if os.path.exists(os.path.join(journal["folder"], name))]


def _finish_roll_back(params, conn_params, journal, facts):
    """From wherever a rollback stopped: the server stopped while the rollback point is not whole in the data
    directory, the kept files moved back, the server started (AOF off: it loads the rollback point's RDB), AOF on
    and rewritten; then the journal is closed (abandoned) and the run fails naming the problem."""
    if _kept(journal):
        client, _error, _kind = rd.try_connect(conn_params)
        if client is not None:  # it runs the backup that did not verify: its dataset is not kept
            with client:
                client.config_set("appendonly", "no")
                rd.config_rewrite(client)
                try:
                    client.shutdown(nosave=True)
                except Exception as exc:
                    if not rd.is_driver_error(exc):
                        raise
        _wait(lambda: rd.try_connect(conn_params)[2] == "refused", params, "%s to stop" % rd.endpoint(conn_params))
        for name in _kept(journal):  # what the folder holds, whatever the journal had time to record
            kept, target = os.path.join(journal["folder"], name), os.path.join(journal["dir"], name)
            if os.path.isdir(target):
                shutil.rmtree(target)
            os.rename(kept, target)
    if rd.try_connect(conn_params)[2] == "refused":
        _start(params, journal)
    _wait(lambda: _loaded(conn_params), params, "%s to load the rollback point" % rd.endpoint(conn_params))
    client = rd.connect(conn_params)
    with client:
        _aof_on(client, params, conn_params)
        facts["keys_after"] = rd.keyspace(client.info("keyspace"))
    _save(journal, "abandoned")
    facts["rolled_back"] = True
    raise ModuleFailure("backup %s did not verify after loading (%s): the dataset from before the restore was put "
                        "back (AOF on, rewritten) from %s%s"
                        % (journal["backup"]["id"], journal.get("problem") or "see the earlier run", journal["folder"],
                           "; this run finished that rollback, which an earlier run began and was cut off in"
                           if facts.get("resumed_from") == "rolling_back" else ""),
                        **facts)


def _wait_replicas(params, conn_params, replicas, facts):
    """Every replica the primary had online before is online again at the primary's offset."""
    if not replicas:
        return []
    began = time.monotonic()
    wanted = set((r["host"], r["port"]) for r in replicas)

    def in_sync():
        client = rd.connect(conn_params)
        with client:
            info = client.info("replication")
        offset = int(info.get("master_repl_offset", 0))
        rows = [r for r in rd.replicas_of(info) if (r["host"], r["port"]) in wanted]
        if len(rows) == len(wanted) and all(r["state"] == "online" and r["offset"] >= offset for r in rows):
            return rows
        return None

    rows = _wait(in_sync, params, "the replicas of %s in sync" % rd.endpoint(conn_params))
    facts["durations"]["replicas"] = round(time.monotonic() - began, 3)
    return rows


def _wait(probe, params, what):
    try:
        value = wait_for(probe, params["wait_timeout"], interval=params["poll_interval"], what=what)[0]
    except WaitTimeout as exc:
        raise rd.RedisError("%s (wait_timeout; last seen: %s)" % (exc, exc.last)) from None
    return value


def _iso(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat()

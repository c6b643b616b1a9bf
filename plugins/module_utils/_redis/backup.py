# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine of redis_backup: BGSAVE and wait, copy the RDB atomically to the store, sha256,
redis-check-rdb on the stored copy, metadata beside it, retention.

Preconditions (parameters, the store writable, the server answering and not loading, its RDB file visible
from here) are checked before the BGSAVE; check mode stops there and touches nothing (no BGSAVE either).
"""

from __future__ import annotations

import datetime
import os
import time

from ansible_collections.erlmcp.dr.plugins.module_utils._redis import client as rd
from ansible_collections.erlmcp.dr.plugins.module_utils._redis import store as store_mod
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import WaitTimeout, wait_for

POSITIVE = ("bgsave_timeout", "poll_interval", "check_timeout", "connect_timeout")
SAMPLE_MAX = 1000


def run(params, check_mode=False, diff=False, warn=None):
    _validate(params)
    started = time.monotonic()
    conn_params = rd.connection_params(params)
    backup_id = params.get("backup_id") or _default_id(params, conn_params)
    facts = dict(changed=False, backup_id=backup_id, verified=False, deleted=[])
    with rd.translate_errors(facts, "while backing up %s" % rd.endpoint(conn_params)):
        store = store_mod.store_from(params)
        facts.update(store=store.kind, store_dir=store.path, path=store.rdb_path(backup_id),
                     metadata_path=store.metadata_path(backup_id))
        done = _already_done(store, backup_id, params.get("hmac_key")) if params.get("backup_id") else None
        if done is not None:
            facts.update(_facts_of(done), deleted=[] if check_mode else _apply_retention(store, params, facts))
            return facts
        store.check_writable(create=False)
        client = rd.connect(conn_params)
        with client:
            node = rd.read_node(client)
            if node["loading"]:
                raise rd.RedisError("%s is loading its dataset (loading:1): back it up once it has loaded"
                                    % rd.endpoint(conn_params))
            source = _source_rdb(params, node, conn_params)
            if check_mode:
                planned = store.list() + [dict(id=backup_id, lastsave=int(time.time()), verified=True)]
                facts.update(changed=True, source_path=source, would_delete=_plan(planned, params, backup_id))
                return facts
            store.check_writable(create=True)  # the last precondition, and the first change: the store exists
            facts["changed"] = True
            saved = _bgsave(client, params, conn_params, facts)
            saved["samples"] = _samples(client, params, conn_params, saved)
        metadata = _store_copy(store, source, backup_id, params, node, saved, facts)
    facts.update(_facts_of(metadata))
    if not metadata["verified"]:
        raise ModuleFailure("the stored copy %s of backup %s failed redis-check-rdb (exit %s): %s; it stays in the "
                            "store marked verified: false and will never be restored from"
                            % (facts["path"], backup_id, metadata["check"]["returncode"],
                               metadata["check"].get("reason")), **facts)
    facts["deleted"] = _apply_retention(store, params, facts)
    facts["durations"]["total"] = round(time.monotonic() - started, 3)
    return facts


def _validate(params):
    rd.check_positive(params, POSITIVE)
    if params.get("sample_size") is not None and not 0 <= params["sample_size"] <= SAMPLE_MAX:
        raise ModuleFailure("sample_size is %s: expected 0 (no sampled values) to %s keys per database (sample_size)"
                            % (params["sample_size"], SAMPLE_MAX))
    if params.get("retention_count") is not None and params["retention_count"] < 1:
        raise ModuleFailure("retention_count is %s: expected 1 or more (the newest verified backup is always kept; "
                            "leave retention_count out to keep every backup)" % params["retention_count"])
    if params.get("retention_max_age") is not None and params["retention_max_age"] < 0:
        raise ModuleFailure("retention_max_age is %s: expected 0 or more seconds (retention_max_age)"
                            % params["retention_max_age"])
    if params.get("backup_id") is not None:
        try:
            store_mod.check_backup_id(params["backup_id"])
        except rd.RedisError as exc:
            raise ModuleFailure(str(exc)) from None


def _default_id(params, conn_params):
    name = params.get("node_name") or "redis-%s" % conn_params["port"]
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in name).strip("-.") or "redis"
    return "%s-%s" % (safe[:80], stamp)


def _already_done(store, backup_id, hmac_key=None):
    """A verified backup by this id whose stored copy still has its sha256 (and, given the key, whose metadata
    carries its HMAC): the end state holds already."""
    metadata = store.read(backup_id)
    if not metadata or not metadata.get("verified") or store_mod.hmac_problem(metadata, hmac_key):
        return None
    if store.stored_sha256(backup_id) != metadata.get("sha256"):
        return None
    return metadata


def _source_rdb(params, node, conn_params):
    if params.get("rdb_path"):
        return params["rdb_path"]
    folder = node.get("dir")
    if not folder or not os.path.isdir(folder):
        raise rd.RedisError(
            "the RDB file of %s lives in %s on the Redis host, which this host does not see: run the module on the "
            "Redis host (delegate_to) or set rdb_path" % (rd.endpoint(conn_params), folder))
    return os.path.join(folder, node["dbfilename"])


def _bgsave(client, params, conn_params, facts):
    """BGSAVE once no other save runs and the server clock is past LASTSAVE; wait until it finished with
    rdb_bgsave_in_progress:0, rdb_last_bgsave_status:ok, rdb_saves and LASTSAVE advanced."""
    timeout, interval = params["bgsave_timeout"], params["poll_interval"]
    began = time.monotonic()
    where = rd.endpoint(conn_params)
    _wait(lambda: _persistence(client)["rdb_bgsave_in_progress"] == 0, timeout, interval,
          "the BGSAVE already running on %s to finish" % where)
    before = _persistence(client)
    _wait(lambda: rd.server_time(client) > before["rdb_last_save_time"], timeout, interval,
          "the clock of %s to pass its last save" % where)
    client.bgsave(schedule=True)
    replication = client.info("replication")

    def finished():
        now = _persistence(client)
        if now["rdb_bgsave_in_progress"] or (now["rdb_saves"] is not None and now["rdb_saves"] <= before["rdb_saves"]):
            return None
        if now["rdb_last_bgsave_status"] != "ok":
            raise rd.RedisError("BGSAVE on %s failed (rdb_last_bgsave_status:%s): see the server's log; nothing was "
                                "copied to the store" % (where, now["rdb_last_bgsave_status"]))
        return now if now["rdb_last_save_time"] > before["rdb_last_save_time"] else None

    now = _wait(finished, remaining(began, timeout), interval, "BGSAVE on %s to finish" % where)
    keyspace_info = client.info("keyspace")
    facts["durations"] = dict(bgsave=round(time.monotonic() - began, 3))
    return dict(lastsave=now["rdb_last_save_time"], changes_after=now["rdb_changes_since_last_save"],
                keys=rd.keyspace(keyspace_info), repl_offset=int(replication.get("master_repl_offset", 0)),
                replid=replication.get("master_replid"))


def _samples(client, params, conn_params, saved):
    """Sampled values (key -> digest) for the restore to compare, only when they are exactly the file's: no write
    between the save and the end of the sampling; else None."""
    if not params.get("sample_size") or saved["changes_after"] != 0:
        return None
    samples = rd.sample_values(conn_params, saved["keys"], params["sample_size"])
    now = _persistence(client)
    if now["rdb_changes_since_last_save"] != 0 or now["rdb_last_save_time"] != saved["lastsave"]:
        return None
    return samples


def remaining(began, timeout):
    return max(timeout - (time.monotonic() - began), 0.001)


def _persistence(client):
    info = client.info("persistence")
    return dict(rdb_bgsave_in_progress=int(info.get("rdb_bgsave_in_progress", 0)),
                rdb_last_bgsave_status=info.get("rdb_last_bgsave_status"),
                rdb_last_save_time=int(info.get("rdb_last_save_time", 0)),
                rdb_saves=int(info["rdb_saves"]) if "rdb_saves" in info else None,  # Redis 7.0+
                rdb_changes_since_last_save=int(info.get("rdb_changes_since_last_save", 0)))


def _wait(probe, timeout, interval, what):
    try:
        value = wait_for(probe, timeout, interval=interval, what=what)[0]
    except WaitTimeout as exc:
        raise rd.RedisError("%s (bgsave_timeout; last seen: %s)" % (exc, exc.last)) from None
    return value


def _store_copy(store, source, backup_id, params, node, saved, facts):
    try:
        size, digest, check, durations = store.put_rdb(
            source, backup_id, lambda path: _checked(path, params))
    except OSError as exc:
        raise rd.RedisError("cannot copy the RDB file %s to %s: %s (%s)"
                            % (source, store.rdb_path(backup_id), exc.strerror or exc,
                               "store_dir" if store.kind == "directory" else "staging_dir")) from None
    facts["durations"].update(durations)
    aux = check["aux"]
    metadata = dict(
        format=store_mod.METADATA_FORMAT, id=backup_id, file=os.path.basename(store.rdb_path(backup_id)),
        source=dict(name=params.get("node_name"), host=params["login_host"], port=params["login_port"],
                    role=node["role"], run_id=node["run_id"], path=source),
        lastsave=saved["lastsave"],
        created_at=datetime.datetime.fromtimestamp(saved["lastsave"], datetime.timezone.utc).isoformat(),
        redis_version=aux.get("redis-ver") or node["redis_version"],
        rdb_version=check["rdb_version"],
        keys_per_db=saved["keys"], keys_exact=saved["changes_after"] == 0,
        rdb_keys=(check["keys_read"] - (check["already_expired"] or 0)) if check["keys_read"] is not None else None,
        size=size, sha256=digest,
        replid=aux.get("repl-id") or saved["replid"],
        repl_offset=int(aux["repl-offset"]) if aux.get("repl-offset", "").lstrip("-").isdigit()
        else saved["repl_offset"],
        samples=saved.get("samples"),
        verified=check["ok"],
        check=dict(tool=params["check_rdb_path"], returncode=check["returncode"], output=check["output"],
                   reason=check["reason"]),
        durations=facts["durations"],
    )
    if params.get("hmac_key"):
        metadata["hmac"] = store_mod.metadata_hmac(metadata, params["hmac_key"])
    store.write_metadata(metadata)
    return metadata


def _checked(path, params):
    """redis-check-rdb on the copy about to be (or just) stored, with the RDB version in its header."""
    check = store_mod.check_rdb(params["check_rdb_path"], path, params["check_timeout"])
    check["rdb_version"] = store_mod.rdb_file_version(path)
    return check


def _facts_of(metadata):
    return dict(verified=bool(metadata.get("verified")), sha256=metadata.get("sha256"), size=metadata.get("size"),
                rdb_version=metadata.get("rdb_version"), redis_version=metadata.get("redis_version"),
                keys_per_db=metadata.get("keys_per_db"), keys_exact=metadata.get("keys_exact"),
                rdb_keys=metadata.get("rdb_keys"),
                repl_offset=metadata.get("repl_offset"), lastsave=metadata.get("lastsave"),
                created_at=metadata.get("created_at"), durations=dict(metadata.get("durations") or {}),
                metadata=metadata)


def _plan(backups, params, keep_id):
    doomed = store_mod.retention_plan(backups, time.time(), params.get("retention_count"),
                                      params.get("retention_max_age"))
    return [backup_id for backup_id in doomed if backup_id != keep_id]


def _apply_retention(store, params, facts):
    if params.get("retention_count") is None and params.get("retention_max_age") is None:
        return []
    doomed = _plan(store.list(), params, facts["backup_id"])
    for backup_id in doomed:
        store.delete(backup_id)
    if doomed:
        facts["changed"] = True
    return doomed

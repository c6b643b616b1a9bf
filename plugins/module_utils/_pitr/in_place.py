# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine of pg_restore_in_place: the live primary's own data directory restored to a point in time and
promoted on a new timeline (docs/pitr.md, "Restoring in place"). The point of no return of the pg_restore_in_place
runbook: what the cluster committed after the target is no longer served (it stays in the WAL archive, on the old
timeline).

Checked before anything changes (a refusal changes nothing):
  1. the target: a time (not in the future), an LSN (not ahead of the primary's WAL) or a restore point's name;
     latest is refused (it would restore what the primary holds already);
  2. the node: a running, writable primary (or the node a cut-off run of ours left: the marker beside its data
     directory, `<data_dir>.erlmcp-dr-in-place.json`, says so); its timeline is the one recovery follows
     (pgBackRest's --target-timeline): the target lies in the history the primary served, never on a timeline a
     former restore abandoned;
  3. the backup (by label, else by LSN / stop time, as pg_restore) and every WAL segment from its start to the
     target on that timeline in the archive (restore.check_wal).
Check mode stops there. Then: the marker says `restoring`; the primary's current WAL segment is switched and
archived (its newest commits are in the archive before it stops: a target among them is reachable, and what the
restore discards stays recoverable); the primary is stopped (fast); its own configuration files are kept;
`pgbackrest restore --delta` rewrites only the files that differ, with recovery set to stop at the target and
promote; its configuration files are put back, with pgBackRest's recovery settings; it is started, and the engine
waits until it left recovery on a new timeline; it reports the last transaction replayed, its time and the new
timeline. Its own postgresql.auto.conf (without the recovery target, which would stop a later standby of this node
there) is put back, and the marker says `promoted`.

A run cut off anywhere is finished by the next run with the same target: a node that promoted already (a timeline
newer than the one it restored from) is only tidied; any other state (running still on the old timeline, stopped,
half-restored, in recovery) is stopped and restored again (--delta: cheap). A different target is refused while a
restore is unfinished, naming the one to finish. A promoted restore of the same backup and target, with the node
still on the timeline it made, is found done.

Private to the collection. Python 3.8 syntax at most: module_utils run on managed hosts.
"""

from __future__ import annotations

import json
import os
import time

from ansible_collections.erlmcp.dr.plugins.module_utils._pitr import plan
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr import restore as scratch_restore
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr.backup import describe_backup, driver_for
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure
from ansible_collections.erlmcp.dr.plugins.module_utils._common.files import write_atomic
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import WaitTimeout, wait_for
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import sql as pg
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.follow import CONFIG_FILES
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.server import Server, ServerError

MARKER_SUFFIX = ".erlmcp-dr-in-place.json"
TARGET_TYPES = ("time", "lsn", "name")
# A folder where the engine records each phase it enters, and where a file pause-<phase> holds it there until
# removed: how the kill matrix (benchmarks/pitr_kill_matrix.py) kills a run at every phase and the lab test holds a
# run under the cluster's lock while a second operator is turned away. Unset (any real run): nothing is written.
PHASE_HOOK_ENV = "ERLMCP_DR_IN_PLACE_PHASE_HOOK"
PHASES = ("archive", "stop", "restore", "start", "promotion", "tidy")
# What pgBackRest writes into postgresql.auto.conf for recovery; carried over when the node's own files are put back.
RECOVERY_SETTINGS = ("restore_command", "recovery_target", "recovery_target_lsn", "recovery_target_name",
                     "recovery_target_time", "recovery_target_xid", "recovery_target_inclusive",
                     "recovery_target_timeline", "recovery_target_action")


def run(params, check_mode=False, diff=False, warn=None):
    target = parse_target(params.get("target_type"), params.get("target"))
    data_dir = os.path.abspath(params["pg_data_dir"])
    server = Server(data_dir, bin_dir=params.get("pg_bin_dir"), log_file=params.get("pg_log_file"))
    facts = dict(changed=False, target=target, data_dir=data_dir, repository=None, node_before=None)
    previous = read_marker(data_dir)
    unfinished = previous if (previous or {}).get("state") == "restoring" else None
    node = read_node(server, params)
    facts["node_before"] = node
    action, from_timeline = decide(previous, node, target, params.get("backup_label"), data_dir)
    facts["action"] = action
    if action == "done":
        facts.update(previous.get("facts") or {}, changed=False, found_done=True, action="done")
        return facts
    if action == "restore":
        _check_target_behind(target, node)
    driver = driver_for(params)
    facts["repository"] = driver.describe()
    if action == "finish":
        backup = dict(label=previous["label"])
    else:
        stanzas = driver.info()
        backup = scratch_restore._choose(stanzas, target, params.get("backup_label") or (unfinished or {}).get("label"))
        facts["wal"] = scratch_restore.check_wal(driver, stanzas, backup, target, timeline=from_timeline)
    facts.update(backup=describe_backup(backup) if "lsn" in backup else backup, from_timeline=from_timeline)
    facts["changed"] = True
    if check_mode:
        return facts
    marker = dict(state="restoring", label=backup["label"], target=target, from_timeline=from_timeline,
                  data_dir=data_dir, started_at=time.time())
    _write_marker(data_dir, marker)
    try:
        if action != "finish":
            try:
                _phase("archive")
                facts["archived_before_stop"] = _archive_current_segment(node, params)
            except ModuleFailure:
                if not unfinished:  # nothing changed yet: no restore to finish
                    os.unlink(marker_path(data_dir))
                raise
            _phase("stop")
            _stop(server, params)  # the point of no return: from here the node serves nothing until promoted
            own_files = _own_config_files(server, unfinished)
            marker["own_files"] = own_files  # a re-run after a kill puts these back, not pgBackRest's copies
            _write_marker(data_dir, marker)
            _phase("restore")
            driver.restore(backup["label"], target, data_dir, delta=True, action="promote", timeline=from_timeline)
            _put_back_config(server, own_files)
            _phase("start")
            _start(server, params)
        else:
            own_files = (unfinished or {}).get("own_files") or _own_config_files(server, None)
        _phase("promotion")
        facts["proof"] = _wait_promoted(server, params, from_timeline, facts)
        _phase("tidy")
        _tidy_recovery_settings(server, own_files)
    except ModuleFailure as exc:
        facts.update(exc.facts)
        if exc.facts.get("error_kind") == "archive" and not unfinished:
            raise ModuleFailure(str(exc), **facts) from None
        raise ModuleFailure("%s. %s" % (str(exc).rstrip("."), _what_to_do(data_dir, target)), **facts) from None
    except ServerError as exc:
        raise ModuleFailure("%s. %s" % (str(exc).rstrip("."), _what_to_do(data_dir, target)),
                            error_kind="restore", **facts) from None
    facts["new_timeline"] = facts["proof"]["timeline"]
    _write_marker(data_dir, dict(marker, state="promoted", new_timeline=facts["new_timeline"],
                                 facts=dict(facts, changed=False)))
    return facts


# -- decisions (pure) ------------------------------------------------------------------------------------------


def parse_target(kind, value):
    if kind not in TARGET_TYPES:
        raise ModuleFailure("target_type is %r: a restore in place needs one of %s (target_type); latest would "
                            "restore what the primary holds already" % (kind, ", ".join(TARGET_TYPES)))
    return scratch_restore.parse_target(kind, value)


def decide(previous, node, target, label, data_dir):
    """(action, the timeline recovery follows): restore | finish (promoted already, tidy up) | done; or refuse.
    previous: the marker (None); node: read_node()."""
    if previous and previous.get("state") == "restoring":
        if previous.get("target") != target or (label and label != previous.get("label")):
            raise ModuleFailure(
                "a restore in place of %s to %s (backup %s) was cut off (%s says restoring): run again with that "
                "target (target_type %s, target %s) to finish it; the node serves nothing until it is finished"
                % (data_dir, plan.describe_target(previous["target"]), previous.get("label"), marker_path(data_dir),
                   previous["target"]["type"], previous["target"].get("value")), error_kind="refused_target")
        promoted = node["running"] and node["role"] == "primary" and \
            int(node["timeline"] or 0) > int(previous["from_timeline"])
        return ("finish" if promoted else "restore"), int(previous["from_timeline"])
    if previous and previous.get("state") == "promoted" and previous.get("target") == target \
            and (not label or label == previous.get("label")) and node["running"] and node["role"] == "primary" \
            and int(node["timeline"] or 0) == int(previous.get("new_timeline") or -1):
        return "done", int(previous["from_timeline"])
    if not node["running"] or node["role"] != "primary":
        raise ModuleFailure(
            "%s is %s: a restore in place rewinds the cluster's running primary (its timeline is the history the "
            "target lies in); start it, or name the node that is the primary (node)"
            % (data_dir, "stopped" if not node["running"] else "a standby (in recovery)"),
            error_kind="refused_target")
    if node.get("timeline") is None:
        raise ModuleFailure("the timeline of %s could not be read: it is needed to restore along it" % data_dir)
    return "restore", int(node["timeline"])


def _check_target_behind(target, node):
    """The target lies in what the primary has written: an LSN not ahead of its WAL, a time not in the future."""
    if target["type"] == "lsn" and node.get("current_lsn") and \
            plan.parse_lsn(target["value"]) > plan.parse_lsn(node["current_lsn"]):
        raise ModuleFailure("target LSN %s is ahead of the primary's WAL (%s): nothing there to restore to; choose "
                            "an LSN it has written (target)" % (target["value"], node["current_lsn"]),
                            error_kind="refused_target")
    if target["type"] == "time" and target["epoch"] > time.time():
        raise ModuleFailure("target %s is in the future: a restore in place goes back in time; choose a time "
                            "already past (target)" % target["value"], error_kind="refused_target")


def _what_to_do(data_dir, target):
    return ("The primary %s is NOT serving: it is stopped or recovering, past the point of no return. Run "
            "pg_restore_in_place again with the same target (target_type %s, target %s): it finishes from where "
            "this run stopped (%s)" % (data_dir, target["type"], target.get("value"), marker_path(data_dir)))


# -- the node --------------------------------------------------------------------------------------------------


def read_node(server, params):
    """{running, role, timeline, current_lsn, read_only}: from the server when it answers, else its control file."""
    if server.is_running():
        conn, error = pg.try_connect(pg.connection_params(params))
        if conn is not None:
            with conn:
                state = pg.node_state(conn)
            return dict(running=True, role=state["role"], timeline=state["timeline"],
                        current_lsn=state["current_lsn"], read_only=state["read_only"])
        return dict(running=True, role=None, timeline=None, current_lsn=None, read_only=None, error=error)
    timeline = None
    try:
        timeline = int(server.controldata().get("Latest checkpoint's TimeLineID") or 0) or None
    except (ServerError, ValueError):
        pass
    return dict(running=False, role=None, timeline=timeline, current_lsn=None, read_only=None)


def _archive_current_segment(node, params):
    """Switch the primary's WAL and wait until the archiver stored the segment: its newest commits are in the
    archive before it stops (recovery replays from the archive only). None when the node does not run as primary
    (a re-run after a kill: it was stopped before)."""
    if not (node["running"] and node["role"] == "primary"):
        return None
    conn_params = pg.connection_params(params)
    with pg.connect(conn_params) as conn:
        segment = pg.query_one(conn, "SELECT pg_walfile_name(pg_switch_wal()) AS name")["name"]

    def archived():
        with pg.connect(conn_params) as conn:
            row = pg.query_one(conn, "SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver")
        return bool(row["last_archived_wal"]) and row["last_archived_wal"] >= segment

    try:
        wait_for(archived, params["archive_timeout"], interval=0.1, what="WAL segment %s archived" % segment)
    except WaitTimeout:
        raise ModuleFailure("the primary's WAL segment %s was not archived within %ss (archive_timeout): archiving "
                            "is broken or slow (pg_stat_archiver, pgbackrest check); nothing was restored and the "
                            "primary still runs" % (segment, params["archive_timeout"]),
                            error_kind="archive") from None
    return segment


def _stop(server, params):
    server.stop(mode="fast", timeout=params["start_timeout"])


def _own_config_files(server, previous):
    """The node's configuration files as they are before pgBackRest writes the backup's (a backup taken on another
    member holds that member's port and settings); a re-run after a kill takes the ones the killed run kept."""
    kept = (previous or {}).get("own_files")
    if kept:
        return kept
    return dict((name, server.read_file(name)) for name in CONFIG_FILES)


def _put_back_config(server, own_files):
    """The node's own configuration files back, with the recovery settings pgBackRest wrote (restore_command, the
    target, promote) on top of its postgresql.auto.conf."""
    recovery = dict((name, server.auto_conf_setting(name)) for name in RECOVERY_SETTINGS)
    for name in CONFIG_FILES:
        if own_files.get(name) is not None:
            server.write_file(name, own_files[name])
        elif server.read_file(name) is not None:
            os.unlink(server.config_path(name))
    server.set_auto_conf(dict((name, value) for name, value in recovery.items() if value is not None))
    standby_signal = server.config_path("standby.signal")
    if os.path.exists(standby_signal):  # a backup of a standby holds none; a promoted primary must not keep one
        os.unlink(standby_signal)


def _tidy_recovery_settings(server, own_files):
    """The node's own postgresql.auto.conf back: the recovery target stays out (a later standby of this node, made
    by database_rejoin, would stop replay there). Read at the next start only: nothing to reload."""
    if own_files.get("postgresql.auto.conf") is not None:
        server.write_file("postgresql.auto.conf", own_files["postgresql.auto.conf"])
    else:
        server.set_auto_conf(dict((name, None) for name in RECOVERY_SETTINGS))


def _start(server, params):
    try:
        server.start(timeout=params["start_timeout"])
    except ServerError as exc:
        raise ModuleFailure("%s did not start after the restore: %s; its log %s ends: %s"
                            % (server.data_dir, exc, server.log_file, scratch_restore._log_tail(server.log_file)),
                            error_kind="recovery") from None


def _wait_promoted(server, params, from_timeline, facts):
    """Until the node left recovery on a timeline newer than from_timeline; the proof of what it replayed."""
    conn_params = pg.connection_params(params)

    def promoted():
        conn, _error = pg.try_connect(conn_params)
        if conn is None:
            if not server.is_running():
                raise ModuleFailure("%s stopped during recovery; its log %s ends: %s" % (
                    server.data_dir, server.log_file, scratch_restore._log_tail(server.log_file)),
                    error_kind="recovery")
            return None
        with conn:
            state = pg.node_state(conn)
            if state["in_recovery"] or not state["timeline"] or int(state["timeline"]) <= from_timeline:
                return None
            row = pg.query_one(conn, "SELECT pg_last_xact_replay_timestamp() AS last_xact_time, "
                                     "pg_last_wal_replay_lsn()::text AS replay_lsn")
            proof = dict(timeline=int(state["timeline"]), replay_lsn=row["replay_lsn"],
                         last_xact_time=row["last_xact_time"].isoformat() if row["last_xact_time"] else None)
            if params.get("check_query"):
                proof["check_rows"] = [dict(r) for r in pg.query_all(conn, params["check_query"])[:100]]
            return proof

    try:
        proof = wait_for(promoted, params["recovery_timeout"], interval=0.2,
                         what="%s to reach the target and promote" % server.data_dir)[0]
    except WaitTimeout as exc:
        raise ModuleFailure("%s (recovery_timeout); its log %s ends: %s" % (
            exc, server.log_file, scratch_restore._log_tail(server.log_file)), error_kind="timeout") from None
    return json.loads(json.dumps(proof, default=str))


# -- the phase hook (tests and benchmarks only) -----------------------------------------------------------------


def _phase(name):
    """Records entering phase `name` in the hook folder (PHASE_HOOK_ENV) and waits while pause-<name> exists there;
    without the variable, nothing."""
    folder = os.environ.get(PHASE_HOOK_ENV)
    if not folder:
        return
    with open(os.path.join(folder, "phases"), "a") as handle:
        handle.write(name + "\n")
    pause = os.path.join(folder, "pause-" + name)
    while os.path.exists(pause):
        time.sleep(0.05)


# -- the marker ------------------------------------------------------------------------------------------------


def marker_path(data_dir):
    return data_dir.rstrip(os.sep) + MARKER_SUFFIX


def read_marker(data_dir):
    try:
        with open(marker_path(data_dir)) as handle:
            return json.load(handle)
    except (IOError, OSError, ValueError):
        return None


def _write_marker(data_dir, record):
    # 0600: it holds the node's configuration files (pg_hba.conf rules), nothing for others to read.
    write_atomic(marker_path(data_dir), json.dumps(record, sort_keys=True, default=str) + "\n", 0o600)

# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Logic of erlmcp.dr.pg_standby_follow: make one node stream from a (new) primary.

Two ways to get there:

* follow: a running standby gets a new primary_conninfo (ALTER SYSTEM + reload, which
  PostgreSQL 13+ applies without a restart) and, with recovery_target_timeline='latest',
  crosses onto the primary's timeline by itself;
* rewind: the node is stopped, pg_rewind makes its data directory a copy of the primary's
  history (or says "no rewind required"), its own config files are put back, and it is
  started as a standby.

The replication password reaches the standby through a passfile on the node's host (never inline
in primary_conninfo, which PostgreSQL logs on reload). `run()` gathers the facts, decides with the
pure functions of _follow_plan (unit-tested), and acts. Private to the collection: the API may
change between releases.
"""

from __future__ import annotations

import os
import re
import socket
import time

from ansible_collections.erlmcp.dr.plugins.module_utils._common.at_once import each_at_once
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import sql as pg
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.data_dir_identity import (
    check_data_dir_serves, read_served,
)
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.follow_plan import (
    PRIMARY_CLUSTER_STATES,
    FollowError,
    choose_action,
    clean_stop_divergence,
    divergence,
    has_inline_password,
    is_following,
    mask_conninfo,
    no_rewind_required,
    pgpass_line,
    pgpass_password,
    rewind_errors,
    same_host,
    rewind_copied_bytes,
    short_rewind_output,
    split_brain,
    upstream_of,
)
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.follow_plan import Plan
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.rewind_marker import (
    PHASE_REWOUND,
    MarkerError,
    mark_rewound,
    marker_path,
    read_marker,
    remove_marker,
    rewind_finished,
    start_marker,
)
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.server import (
    Server,
    ServerError,
    conf_value,
    conninfo,
    parse_conninfo,
    write_owned,
)
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import WaitTimeout, wait_for

# pg_rewind copies these from the source; the node keeps its own (its port, its own hba rules).
CONFIG_FILES = ("postgresql.conf", "postgresql.auto.conf", "pg_hba.conf", "pg_ident.conf")
SIGNAL_FILE = "standby.signal"
APPLICATION_NAME = "erlmcp.dr.pg_standby_follow"
# How often a node is asked whether it streams, then whether it replayed the marker: each probe is a query on a
# connection kept open, and in a switchover the writes wait for none of it, but the run's end does.
PROBE_SECONDS = 0.01
PASSFILE_NAME = ".erlmcp-dr.pgpass"
READ_ONLY = "default_transaction_read_only"
PRIMARY_HINTS = dict(host="primary_host", port="primary_port")
# The replay marker: a logical message committed on the primary once the node streams; the node counts as rejoined
# only when it has replayed past it (a node that streams but cannot replay, diverged or paused, never does).
MARKER_PREFIX = "erlmcp.dr.rejoin"
_MARKER_SQL = "SELECT pg_logical_emit_message(true, %s, %s)::text AS lsn"
_REPLAY_SQL = "SELECT pg_last_wal_replay_lsn()::text AS lsn, pg_is_wal_replay_paused() AS paused"


def default_passfile(data_dir):
    """<parent of data_dir>/.erlmcp-dr.pgpass: outside the data directory (pg_basebackup/pg_rewind leave it be)."""
    return os.path.join(os.path.dirname(os.path.abspath(data_dir).rstrip("/")), PASSFILE_NAME)


# ---------------------------------------------------------------- gathering facts (I/O)


def _connect(params, what, hints=None):
    try:
        return pg.connect(params, application_name=APPLICATION_NAME, hints=hints)
    except pg.PgError as exc:
        raise FollowError("%s: %s" % (what, exc)) from None


def _check_replication_login(params, password):
    """Log in to the primary as the replication user, as the standby's WAL receiver will."""
    conn_params = dict(host=params["primary_host"], port=params["primary_port"], user=params["replication_user"],
                       password=password, dbname="replication",
                       connect_timeout=params.get("connect_timeout") or 5)
    where = "%s:%s" % (params["primary_host"], params["primary_port"])
    try:
        conn = pg.connect(conn_params, APPLICATION_NAME, hints=dict(PRIMARY_HINTS, password="replication_password"),
                          replication="true")
    except pg.PgError as exc:
        raise FollowError(
            "the standby could not stream: replication login to %s as %s failed: %s; check replication_user, "
            "replication_password and the primary's pg_hba.conf 'replication' rules" % (
                where, params["replication_user"], exc)) from None
    conn.close()


def _quiet_query(conn, sql, args=None):
    """One row, or None when the query is not allowed/possible (a driver error)."""
    try:
        return pg.query_one(conn, sql, args)
    except Exception as exc:
        if pg.is_driver_error(exc):
            return None
        raise


def _history_file(server, timeline):
    """A stopped node's own history of its timeline, from its pg_wal; [] on timeline 1; None when it has none."""
    if not timeline or int(timeline) <= 1:
        return []
    text = _read_text(os.path.join(server.data_dir, "pg_wal", "%08X.history" % int(timeline)))
    return pg.parse_history(text) if text is not None else None


def _setting(conn, name):
    """A setting's value; None when it is unknown or this login may not read it."""
    row = _quiet_query(conn, "SELECT current_setting(%s, true) AS value", (name,))
    return row["value"] if row else None


def _same_server(node_conn, primary_conn):
    sql = "SELECT pg_postmaster_start_time()::text AS started, current_setting('port') AS port"
    return pg.query_one(node_conn, sql) == pg.query_one(primary_conn, sql)


def snapshot(server):
    """The config files and standby.signal as they are now (None for a missing file)."""
    return dict((name, server.read_file(name)) for name in CONFIG_FILES + (SIGNAL_FILE,))


def restore(server, saved, names):
    """Put the named files back as saved (removing those that did not exist)."""
    for name in names:
        content = saved.get(name)
        current = server.read_file(name)
        if content is None:
            if current is not None:
                os.unlink(server.config_path(name))
        elif current != content:
            server.write_file(name, content)


class _OwnConfigView(object):
    """A Server whose config settings are read from the node's own files (a marker's own_files), not from the data
    directory, where an interrupted pg_rewind may have left the primary's (or emptied them)."""

    def __init__(self, server, own_files):
        self._server = server
        self._own_files = own_files

    def __getattr__(self, name):
        return getattr(self._server, name)

    def conf_setting(self, name):
        return files_setting(self._own_files, name)


SETTING_FILES = ("postgresql.conf", "postgresql.auto.conf")  # in the order PostgreSQL reads them: the last wins


def files_setting(files, name, auto_only=False):
    """A setting as a snapshot of config files ({file name: text}) says, read the way Server.conf_setting reads them."""
    names = SETTING_FILES[1:] if auto_only else SETTING_FILES
    return conf_value([files.get(file_name) for file_name in names], name)


def _read_text(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


# ---------------------------------------------------------------- running


def defaults():
    """Every option's default, as the module's argument spec has it (for callers outside Ansible)."""
    values = dict((name, spec.get("default")) for name, spec in pg.connection_argument_spec().items())
    values.update(bin_dir=None, log_file=None, replication_user="replicator", replication_password=None,
                  application_name=None, method="auto", allow_stop_primary=False, allow_reclone=False, wait_timeout=60,
                  passfile=None,
                  start_timeout=120, rewind_timeout=600)
    return values


class _Run(object):
    def __init__(self, params, check_mode, diff):
        self.p = defaults()
        self.p.update((k, v) for k, v in params.items() if v is not None)
        params = self.p
        self.check_mode = check_mode
        self.want_diff = diff
        self.started = time.monotonic()
        self.primary_where = "%s:%s" % (params["primary_host"], params["primary_port"])
        self.passfile = params["passfile"] or default_passfile(params["data_dir"])
        self.result = dict(
            changed=False, action="none", role_before=None, timeline_before=None, timeline_after=None,
            primary_timeline=None, receive_lsn=None, streaming=False, upstream=None, rewind_output=None,
            primary_conninfo=None, passfile=self.passfile, passfile_changed=False, read_only_lifted=False,
            split_brain=None, diverged_copy=None, marker_lsn=None, replay_lsn=None, seconds=0.0,
            rewind_marker=marker_path(params["data_dir"]), interrupted_rewind_found=False,
            interrupted_rewind_recovery=None,
            # True while a failure can only be a refusal: nothing has been changed yet
            refused=True,
        )
        self.node_conn = None
        self.primary_conn = None
        self.interrupted = None  # the marker an interrupted pg_rewind left (rewind_marker), if any
        self.pg_rewind_done = False  # the interrupted run's pg_rewind had ended: configure and start only

    # -- helpers
    def fail(self, message):
        self.result["seconds"] = round(time.monotonic() - self.started, 3)
        facts = dict((k, v) for k, v in self.result.items() if k != "msg")
        raise FollowError(message, **facts)

    def node_params(self):
        return pg.connection_params(self.p)

    def primary_params(self):
        params = pg.connection_params(self.p)
        params.update(host=self.p["primary_host"], port=self.p["primary_port"])
        return params

    def close(self):
        self.close_node()
        if self.primary_conn is not None:
            _close_quietly(self.primary_conn)
            self.primary_conn = None

    def close_node(self):
        if self.node_conn is not None:
            _close_quietly(self.node_conn)
            self.node_conn = None

    # -- the whole thing: gather, decide, act
    def run(self):
        try:
            with pg.translate_errors(self.result, "on %s" % self.p["data_dir"]):
                self.validate()
                facts = self.gather()
                plan = self.decide(facts)
                self.result["refused"] = False
                if plan is not None:
                    self.act(plan)
                if not self.check_mode:
                    self.verify_replays_marker()
                    # verified as a standby of the primary: no later run has to doubt its files any more
                    if remove_marker(self.server.data_dir):
                        self.result["changed"] = True
                return self.finish()
        except pg.ModuleFailure as exc:
            if isinstance(exc, FollowError):
                raise
            self.fail(str(exc))
        finally:
            self.close()

    def validate(self):
        for name in ("wait_timeout", "start_timeout", "rewind_timeout"):
            if int(self.p[name]) <= 0:
                self.fail("%s must be a positive number of seconds, not %s" % (name, self.p[name]))

    def gather(self):
        """Facts: the new primary (reachable, a primary, same cluster), the node as it is now, the passfile."""
        p = self.p
        server = self.server = Server(p["data_dir"], p.get("bin_dir"), p.get("log_file"))
        if server.status()["state"] == "missing":
            self.fail("no PostgreSQL data directory at %s (data_dir)" % server.data_dir)
        try:
            self.interrupted = read_marker(server.data_dir)
        except MarkerError as exc:
            self.fail(str(exc))
        self.result["interrupted_rewind_found"] = self.interrupted is not None
        self.primary_conn = _connect(self.primary_params(), "the new primary %s (primary_host/primary_port) cannot "
                                     "be queried" % self.primary_where, PRIMARY_HINTS)
        primary = pg.node_state(self.primary_conn)
        if primary["in_recovery"]:
            self.fail("%s is in recovery (a standby), not a primary: promote it first (erlmcp.dr.pg_promote) or point "
                      "primary_host/primary_port at the primary" % self.primary_where)
        self.primary_tli = primary["timeline"]
        self.result["primary_timeline"] = self.primary_tli
        control = server.controldata()
        node_sysid = control.get("Database system identifier")
        if str(node_sysid) != str(primary["system_identifier"]):
            self.fail("%s belongs to another cluster: its system identifier is %s, the primary %s has %s; a standby "
                      "can only follow a primary of its own cluster (re-clone it with pg_basebackup)" % (
                          server.data_dir, node_sysid, self.primary_where, primary["system_identifier"]))
        facts = self.gather_running(server) if server.is_running() else self.gather_stopped(server, control)
        # Read after the node's position: a standby never holds WAL its primary has not written yet.
        self.primary_lsn = pg.current_wal_lsn(self.primary_conn)
        self.result.update(role_before=facts["role"], timeline_before=facts["timeline"],
                           timeline_after=facts["timeline"])
        if facts["node"]:
            self._report_state(facts["node"])
        facts["read_only_conf"] = self.own_setting(READ_ONLY, auto_only=True) in ("on", "true", "1", "yes")
        self.gather_secret(facts)
        return facts

    def gather_running(self, server):
        conn, error = pg.open_connection(self.node_params(), APPLICATION_NAME)
        self.node_conn = conn
        check_data_dir_serves(server, self.node_params(), "rejoining", served=read_served(conn) if conn else None)
        if conn is None:
            self.fail("PostgreSQL in %s is running but cannot be reached at %s (login_host/login_port): %s" % (
                server.data_dir, pg.endpoint(self.node_params()), error))
        if _same_server(self.node_conn, self.primary_conn):
            self.fail("primary_host/primary_port (%s) is this node itself: point them at the new primary"
                      % self.primary_where)
        node = pg.node_state(self.node_conn)
        return dict(node=node, role=node["role"], timeline=node["timeline"], read_only=node["read_only"],
                    conninfo=_setting(self.node_conn, "primary_conninfo") or None,
                    cluster_name=_setting(self.node_conn, "cluster_name"),
                    slot=_setting(self.node_conn, "primary_slot_name"))

    def gather_stopped(self, server, control):
        # the port that says whether data_dir is the server at login_port: the node's own config files, not those
        # an interrupted pg_rewind copied from the primary
        check_data_dir_serves(_OwnConfigView(server, self.interrupted["own_files"]) if self.uses_marker_files()
                              else server, self.node_params(), "rejoining")
        state = control.get("Database cluster state")
        timeline = int(control.get("Latest checkpoint's TimeLineID") or 0) or None
        return dict(node=None, role="stopped", read_only=None, control=control,
                    cluster_state=state,
                    checkpoint_lsn=control.get("Latest checkpoint location"),
                    # the least WAL it holds: its last checkpoint, or how far a standby's recovery got
                    wal_floor=pg.max_lsn(control.get("Latest checkpoint location"),
                                         control.get("Minimum recovery ending location")),
                    ran_as_primary=("last ran (cluster state %r)" % state) if state in PRIMARY_CLUSTER_STATES
                    else None,
                    history=_history_file(server, timeline),
                    timeline=timeline,
                    conninfo=self.own_setting("primary_conninfo") or None,
                    cluster_name=self.own_setting("cluster_name"),
                    slot=self.own_setting("primary_slot_name"))

    def uses_marker_files(self):
        """Whether the node's own config files are the marker's: an interrupted pg_rewind may have begun copying the
        primary's over them (all but a node that the interrupted run had rewound and started)."""
        return self.interrupted is not None and not (
            self.interrupted.get("phase") == PHASE_REWOUND and self.server.is_running())

    def own_files(self):
        """The node's own config files and standby.signal (snapshot()): the marker's, else as they are now."""
        return dict(self.interrupted["own_files"]) if self.uses_marker_files() else snapshot(self.server)

    def own_setting(self, name, auto_only=False):
        """A setting as the node's own config files say (own_files())."""
        if not self.uses_marker_files():
            return self.server.auto_conf_setting(name) if auto_only else self.server.conf_setting(name)
        return files_setting(self.interrupted["own_files"], name, auto_only)

    def gather_secret(self, facts):
        """The replication password (option, else the passfile, else the old inline primary_conninfo: moved to
        the passfile) and the passfile's content as it should be; never returned."""
        p = self.p
        current_file = _read_text(self.passfile)
        password = (p.get("replication_password") or pgpass_password(current_file, p["replication_user"])
                    or parse_conninfo(facts["conninfo"] or "").get("password"))
        self.password = password
        self.passfile_content = pgpass_line(p["primary_host"], p["primary_port"], p["replication_user"],
                                            password) if password else None
        facts["secret_ok"] = (self.passfile_content in (None, current_file)
                              and not has_inline_password(facts["conninfo"]))
        app_name = p.get("application_name") or facts["cluster_name"] or socket.gethostname()
        self.new_conninfo = conninfo(host=p["primary_host"], port=p["primary_port"], user=p["replication_user"],
                                     passfile=self.passfile if password or current_file else None,
                                     application_name=app_name)
        self.result["primary_conninfo"] = self.new_conninfo

    def conninfo_ok(self, current):
        """The node's primary_conninfo names the primary and the replication user, no password inline, and the
        passfile when there is one."""
        fields = parse_conninfo(current or "")
        return (same_host(fields.get("host"), self.p["primary_host"])
                and fields.get("port") == str(self.p["primary_port"])
                and fields.get("user") == self.p["replication_user"] and "password" not in fields
                and (self.passfile_content is None or fields.get("passfile") == self.passfile))

    def decide(self, facts):
        """The plan, or None when there is nothing to do (the result says so)."""
        server, role = self.server, facts["role"]
        plan = self.plan_after_interrupted_rewind(facts)
        if plan is None:
            plan = self.choose(facts)
        self.lift_read_only = role in ("primary", "stopped") and facts["read_only_conf"]
        self.result["action"] = plan.action
        if self.want_diff:
            self.result["diff"] = dict(
                before=dict(primary_conninfo=mask_conninfo(facts["conninfo"]), role=role),
                after=dict(primary_conninfo=self.new_conninfo if plan.action != "none"
                           else mask_conninfo(facts["conninfo"]),
                           role="standby" if plan.action != "none" else role),
            )
        if plan.action == "none":
            self.result["msg"] = "%s already streams from %s on timeline %s" % (
                server.data_dir, self.primary_where, self.primary_tli)
            return None
        self.check_preconditions(facts)
        if plan.action == "reclone" and server.cannot_move_aside():
            self.fail("cannot re-clone: %s; nothing was changed" % server.cannot_move_aside())
        if self.check_mode:
            self.result.update(changed=True, timeline_after=self.primary_tli,
                               passfile_changed=self.passfile_content not in (None, _read_text(self.passfile)),
                               read_only_lifted=self.lift_read_only)
            self.result["msg"] = "would %s (%s): %s would stream from %s on timeline %s%s" % (
                plan.action, plan.reason, server.data_dir, self.primary_where, self.primary_tli,
                " (falling back to pg_rewind if it does not stream)" if plan.fallback else "")
            return None
        return plan

    def plan_after_interrupted_rewind(self, facts):
        """The plan for a node whose pg_rewind was interrupted (its marker found), None for the usual decision.

        PostgreSQL's documentation expects a data directory whose pg_rewind failed midway to need a new base backup.
        Yet pg_rewind (14+) updates the control file last: while it is the one the interrupted pg_rewind started
        from, a new pg_rewind starts over from the same facts (the divergence point, then the node's own WAL from
        there to that control file's checkpoint, which it reads whole or fails on before changing anything) and
        rewrites every file the first one would have. If the interrupted copy destroyed that WAL, pg_rewind fails:
        re-cloned with allow_reclone, else refused.
        """
        marker, role, p = self.interrupted, facts["role"], self.p
        if marker is None:
            return None
        where = self.result["rewind_marker"]
        if role == "stopped":
            if p["method"] == "follow":
                self.fail("a pg_rewind of %s was interrupted (marker %s): its files may be half the primary's, and "
                          "method=follow would start it as it is. Use method=auto or rewind (pg_rewind starts over), "
                          "or allow_reclone=true to re-clone it if that fails; nothing was changed" % (
                              self.server.data_dir, where))
            if rewind_finished(marker, facts["control"]):
                self.pg_rewind_done = True
                self.result["interrupted_rewind_recovery"] = "configure_rewound"
                return Plan("rewind", "its pg_rewind from %s had ended before the run was interrupted (marker %s; its "
                            "control file is pg_rewind's): configured and started as a standby, not rewound again" % (
                                marker.get("source"), where))
            self.result["interrupted_rewind_recovery"] = "rewind_again"
            return Plan("rewind", "its pg_rewind from %s was interrupted midway (marker %s); its control file is still "
                        "the one that pg_rewind started from (pg_rewind writes it last), so pg_rewind starts over" % (
                            marker.get("source"), where))
        if marker.get("phase") == PHASE_REWOUND:
            return None  # rewound and started by the interrupted run: judged as it runs; the marker goes once verified
        if p["allow_reclone"] and (role != "primary" or p["allow_stop_primary"]):
            self.result["interrupted_rewind_recovery"] = "reclone"
            return Plan("reclone", "it runs though its pg_rewind was interrupted midway (marker %s)" % where,
                        stop_first=True)
        self.fail("%s runs though its pg_rewind from %s was interrupted midway (marker %s): its files may be half the "
                  "primary's. Way out: allow_reclone=true (with allow_stop_primary=true if it runs as a primary) stops "
                  "and re-clones it; if you re-cloned it yourself since, remove the marker. Nothing was changed" % (
                      self.server.data_dir, marker.get("source"), where))

    def choose(self, facts):
        """The usual decision (choose_action) from the node's role, its divergence and a split brain."""
        p, role, node = self.p, facts["role"], facts["node"]
        streaming = role == "standby" and is_following(node["wal_receiver"], p["primary_host"], p["primary_port"],
                                                       self.primary_tli)
        already = streaming and facts["secret_ok"] and self.conninfo_ok(facts["conninfo"])
        diverged, why = (None, "")
        if role == "standby" and not already and not streaming:
            history = pg.read_history(self.primary_conn, self.primary_tli)
            diverged, why = divergence(facts["timeline"], node["position_lsn"], self.primary_tli, history)
        elif streaming and not already:
            diverged, why = False, "streaming already; primary_conninfo or its passfile changes"
        elif role == "stopped" and p["method"] == "auto" and facts["cluster_state"] == "shut down":
            history = pg.read_history(self.primary_conn, self.primary_tli)
            diverged, why = clean_stop_divergence(facts["cluster_state"], facts["checkpoint_lsn"], facts["timeline"],
                                                  self.primary_tli, history)
        split = self.split_brain(facts)
        self.result["split_brain"] = split
        try:
            plan = choose_action(role, p["method"], allow_stop_primary=p["allow_stop_primary"], already=already,
                                 diverged=diverged, why=why, fenced=bool(role == "primary" and facts["read_only"]),
                                 split=split, allow_reclone=p["allow_reclone"])
        except FollowError as exc:
            self.fail(str(exc))
        return plan

    def split_brain(self, facts):
        """split_brain()'s finding for this node against the primary (None: nothing says it diverged on the
        primary's timeline)."""
        if facts["timeline"] is None or int(facts["timeline"]) != int(self.primary_tli or 0):
            return None
        primary_history = pg.read_history(self.primary_conn, self.primary_tli)
        node = facts["node"]
        if node is not None:
            return split_brain(facts["timeline"], self.primary_tli,
                               ran_as_primary="runs" if facts["role"] == "primary" else None,
                               node_lsn=node["position_lsn"], primary_lsn=self.primary_lsn,
                               node_history=pg.read_history(self.node_conn, facts["timeline"]),
                               primary_history=primary_history)
        return split_brain(facts["timeline"], self.primary_tli, ran_as_primary=facts["ran_as_primary"],
                           node_lsn=facts["wal_floor"], primary_lsn=self.primary_lsn, node_history=facts["history"],
                           primary_history=primary_history)

    def check_preconditions(self, facts):
        slot = facts["slot"]
        if slot:
            exists = pg.query_one(self.primary_conn, "SELECT count(*) AS n FROM pg_replication_slots "
                                  "WHERE slot_name = %s AND slot_type = 'physical'", (slot,))["n"]
            if not exists:
                self.fail("the node uses primary_slot_name=%r but %s has no such physical replication slot: create it "
                          "on the primary first (or reset primary_slot_name)" % (slot, self.primary_where))
        if self.password:
            _check_replication_login(self.p, self.password)

    def act(self, plan):
        self.saved = self.own_files()
        self.result["changed"] = True
        self.write_passfile()
        if plan.action == "follow" and plan.how == "reload":
            self._follow_reload(plan)
        elif plan.action == "follow":
            self._follow_start(plan)
        elif plan.action == "reclone":
            self._reclone(plan)
        else:
            self._rewind(stop_first=plan.stop_first, reason=plan.reason)

    def write_passfile(self):
        """The standby's passfile: one line for the primary, 0600, owned by the data directory's owner, atomic."""
        if self.passfile_content is None or _read_text(self.passfile) == self.passfile_content:
            return
        folder = os.path.dirname(self.passfile)
        if not os.path.isdir(folder):
            self.fail("the folder of passfile %s does not exist: create it or set passfile" % self.passfile)
        write_owned(self.passfile, self.passfile_content, self.server.data_dir, mode=0o600)
        self.result["passfile_changed"] = True

    def standby_settings(self):
        settings = {"primary_conninfo": self.new_conninfo}
        if self.lift_read_only:
            settings[READ_ONLY] = None
            self.result["read_only_lifted"] = True
        return settings

    def finish(self):
        self.result["seconds"] = round(time.monotonic() - self.started, 3)
        return self.result

    def _report_state(self, state):
        receiver = state.get("wal_receiver")
        self.result.update(
            timeline_after=state.get("timeline"),
            receive_lsn=state.get("receive_lsn"),
            streaming=bool(receiver and receiver.get("status") == "streaming"),
            upstream=upstream_of(receiver),
        )

    # -- waiting
    def wait_streaming(self, timeout):
        """Poll the node until its WAL receiver streams from the primary on the primary's timeline.

        The probes use the node's own connection while it works (a reload changes no session), else one connection
        of their own, opened again after a failure (the node may be starting). The connection that saw the node
        stream becomes the node's, for the marker check after it: a connection costs a SCRAM handshake and a backend,
        a probe on an open one a query."""
        seen = {}
        params = self.node_params()
        own = [self.node_conn] if self.node_conn is not None else []
        held = []

        def probe():
            if own:
                conn = own[0]
            else:
                if not held:
                    conn, error = pg.try_connect(params, application_name=APPLICATION_NAME)
                    if conn is None:
                        seen["error"] = error
                        return None
                    held.append(conn)
                conn = held[0]
            try:
                state = pg.node_state(conn)
            except Exception as exc:  # noqa: BLE001 - a connection lost to a restart: the next probe connects again
                seen["error"] = str(exc)
                if own:
                    own.pop()  # the node's own connection is broken: the probes open their own from now on
                else:
                    _close_quietly(held.pop())
                return None
            seen["state"] = state
            if state["in_recovery"] and is_following(state["wal_receiver"], self.p["primary_host"],
                                                     self.p["primary_port"], self.primary_tli):
                return state
            return None

        state = None
        try:
            state = wait_for(probe, timeout, interval=PROBE_SECONDS, what="streaming from %s" % self.primary_where)[0]
        except WaitTimeout:
            pass
        finally:
            if state is not None and held:
                # the connection that saw the node stream becomes the node's (a broken one of its own is replaced)
                self.close_node()
                self.node_conn = held.pop()
            for conn in held:
                _close_quietly(conn)
        if state is None:
            if "state" in seen:
                self._report_state(seen["state"])
                receiver = seen["state"].get("wal_receiver") or {}
                return False, "its WAL receiver is %s (upstream %s, timeline %s)" % (
                    receiver.get("status") or "not running", upstream_of(receiver) or "none",
                    receiver.get("received_tli") or seen["state"].get("timeline"))
            return False, "it could not be reached: %s" % seen.get("error")
        self._report_state(state)
        return True, None

    # -- follow: running standby, new primary_conninfo, reload
    def _follow_reload(self, plan):
        from psycopg import sql

        self.node_conn.execute(sql.SQL("ALTER SYSTEM SET primary_conninfo = {}").format(sql.Literal(self.new_conninfo)))
        self.node_conn.execute("SELECT pg_reload_conf()")
        ok, why = self.wait_streaming(self.p["wait_timeout"])
        if ok:
            self.result["msg"] = "%s now streams from %s on timeline %s (primary_conninfo changed, reloaded)" % (
                self.server.data_dir, self.primary_where, self.primary_tli)
            return
        if plan.fallback:
            self._rewind(stop_first=True, reason="did not stream from %s within %ss after the reload: %s" % (
                self.primary_where, self.p["wait_timeout"], why))
            return
        # method=follow: put primary_conninfo back as it was
        restore(self.server, self.saved, ["postgresql.auto.conf"])
        self.node_conn.execute("SELECT pg_reload_conf()")
        self.fail("%s did not stream from %s on timeline %s within %ss (wait_timeout): %s; primary_conninfo was put "
                  "back as it was. If its history diverged from the new timeline, use method=rewind (or auto)" % (
                      self.server.data_dir, self.primary_where, self.primary_tli, self.p["wait_timeout"], why))

    # -- follow: start a stopped node (or a stopped former primary) as a standby, no pg_rewind
    def _follow_start(self, plan):
        server = self.server
        if plan.stop_first:
            self.close_node()
            server.stop(mode="fast", timeout=self.p["wait_timeout"])
        server.set_auto_conf(self.standby_settings())
        server.write_standby_signal()
        error = None
        try:
            server.start(timeout=self.start_timeout())
        except ServerError as exc:
            error = str(exc)
        if error is None:
            ok, why = self.wait_streaming(self.p["wait_timeout"])
            if ok:
                self.result["msg"] = "%s started as a standby of %s, streaming on timeline %s" % (
                    server.data_dir, self.primary_where, self.primary_tli)
                return
            error = "it did not stream within %ss (wait_timeout): %s" % (self.p["wait_timeout"], why)
        self._stop_quietly()
        restore(server, self.saved, CONFIG_FILES + (SIGNAL_FILE,))
        if plan.fallback:
            self._rewind(stop_first=False, reason="started as a standby without pg_rewind, %s" % error)
            return
        self.result.update(streaming=False, upstream=None)
        self.fail("%s was started as a standby of %s without pg_rewind, but %s. It is left stopped with its config "
                  "files and standby.signal as they were; use method=rewind (or auto)" % (
                      server.data_dir, self.primary_where, error))

    def start_timeout(self):
        return int(self.p["start_timeout"])

    def _stop_quietly(self):
        try:
            self.server.stop(mode="fast", timeout=self.p["wait_timeout"])
        except ServerError:
            pass

    # -- rewind
    def _rewind(self, *, stop_first, reason):
        server = self.server
        self.result["action"] = "rewind"
        if stop_first:
            self.close_node()
            server.stop(mode="fast", timeout=self.p["wait_timeout"])
        pg.checkpoint(self.primary_conn)  # pg_rewind reads the source's control file: make it current
        own = self.own_files()
        if self.pg_rewind_done:
            output = "pg_rewind had ended before the run was interrupted"
        else:
            output = self.run_pg_rewind(own, reason)
            if output is None:  # it failed on a half-rewound node and allow_reclone re-cloned it instead
                return
        # pg_rewind copied the source's config files (its port, its hba): put the node's own back
        restore(server, own, CONFIG_FILES)
        self.result["rewind_output"] = short_rewind_output(output)
        self.result["copied_bytes"] = rewind_copied_bytes(output)
        server.set_auto_conf(self.standby_settings())
        server.write_standby_signal()
        past_min_recovery = self.write_past_min_recovery_point()
        try:
            server.start(timeout=self.start_timeout())
        except ServerError as exc:
            self.fail("%s: %s, then configured as a standby of %s, but it did not start: %s; see its server log %s" % (
                server.data_dir, "pg_rewind found no rewind required" if no_rewind_required(output)
                else "rewound with pg_rewind", self.primary_where, exc, server.log_file))
        ok, why = self.wait_streaming(self.p["wait_timeout"])
        what = "pg_rewind found no rewind required" if no_rewind_required(output) else "rewound with pg_rewind"
        what += past_min_recovery
        if not ok:
            self.fail("%s: %s and started as a standby of %s, but it did not stream on timeline %s within %ss "
                      "(wait_timeout): %s; see its server log" % (
                          server.data_dir, what, self.primary_where, self.primary_tli, self.p["wait_timeout"], why))
        self.result["msg"] = "%s: %s (%s); it now streams from %s on timeline %s" % (
            server.data_dir, what, reason, self.primary_where, self.primary_tli)

    def run_pg_rewind(self, own, reason):
        """pg_rewind, under the rewind marker (written before it starts, kept until the node is verified); its
        output. On a failure: re-cloned (None) when an interrupted rewind left the node half rewound and allow_reclone
        is set, else the node's files are put back and the run fails."""
        p, server = self.p, self.server
        if self.interrupted is None:  # a re-run keeps the first marker: its own files and control file are the truth
            self.interrupted = start_marker(server.data_dir, own, server.controldata(), self.primary_where)
        source = conninfo(host=p["primary_host"], port=p["primary_port"], user=p["login_user"],
                          dbname=p.get("login_db") or "postgres", connect_timeout=p.get("connect_timeout") or 5)
        try:
            output = server.pg_rewind(source, password=p.get("login_password"), timeout=int(p["rewind_timeout"]))
        except ServerError as exc:
            restore(server, self.saved, CONFIG_FILES + (SIGNAL_FILE,))
            output = short_rewind_output(re.sub(r"^pg_rewind failed \(rc=\d+\): ", "", str(exc)))
            self.result.update(streaming=False, upstream=None, rewind_output=output)
            again = self.result["interrupted_rewind_found"]
            if again and p["allow_reclone"]:
                self.result.update(interrupted_rewind_recovery="reclone", action="reclone")
                self._reclone(Plan("reclone", "pg_rewind could not start over after an interrupted one: %s"
                                   % rewind_errors(output)))
                return None
            if again:  # the way out first: a runbook's summary cuts long messages
                self.fail("%s needs allow_reclone=true (or a re-clone by hand with pg_basebackup from %s, then remove "
                          "the marker %s): its interrupted pg_rewind cannot start over: %s. It is left stopped, its "
                          "own config files put back, its files half the primary's" % (
                              server.data_dir, self.primary_where, self.result["rewind_marker"],
                              rewind_errors(output)))
            self.fail("pg_rewind could not rewind %s from %s (%s): %s. The node is left stopped with its config files "
                      "as they were%s. Way out: re-clone it from the primary with pg_basebackup (e.g. pg_basebackup -h "
                      "%s -p %s -U %s -D <empty dir> -X stream -R), keeping its own postgresql.conf/pg_hba.conf" % (
                          server.data_dir, self.primary_where, reason, rewind_errors(output),
                          "; its files may be half the primary's: the marker %s stays" % self.result["rewind_marker"],
                          p["primary_host"], p["primary_port"], p["replication_user"]))
        self.interrupted = mark_rewound(server.data_dir, self.interrupted)
        return output

    def write_past_min_recovery_point(self):
        """After pg_rewind: commit a marker on the primary so that its WAL holds a record ending past the node's
        minimum recovery point; a note for the result's msg ('' when pg_rewind set none).

        pg_rewind sets the node's minimum recovery point to the primary's WAL insert position, and a standby accepts
        connections (pg_ctl start -w waits for that) only once it has replayed up to that point. On an idle primary
        whose last record is an archive_timeout segment switch (or ends at a page boundary) the insert position lies
        past the end of the last record: the node waits for the NEXT record, which an idle primary never writes (an
        archive_timeout switch is "unimportant" WAL: neither archive_timeout nor the background writer follows it
        with anything). The marker, committed after pg_rewind read that position, starts at or after it.
        """
        point = self.server.controldata().get("Minimum recovery ending location")
        self.result["min_recovery_point"] = point
        if not point or pg.parse_lsn(point) == 0:
            return ""
        marker = self.result["consistency_marker_lsn"] = self.commit_marker("consistency after pg_rewind")
        return ("; a marker committed on the primary (up to %s) took its replay past its minimum recovery point %s, "
                "which an idle primary's WAL may not reach" % (marker, point))

    # -- reclone: a node that diverged on the primary's timeline (allow_reclone)
    def _reclone(self, plan):
        p, server = self.p, self.server
        if plan.stop_first:
            self.close_node()
            server.stop(mode="fast", timeout=self.p["wait_timeout"])
        own = self.own_files()
        try:
            aside = server.move_aside("diverged-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
        except ServerError as exc:
            self.fail("%s; %s is left stopped with its data directory as it was" % (exc, server.data_dir))
        self.result["diverged_copy"] = aside
        source = conninfo(host=p["primary_host"], port=p["primary_port"], user=p["replication_user"],
                          application_name=APPLICATION_NAME, connect_timeout=p.get("connect_timeout") or 5)
        try:
            server.pg_basebackup(source, password=self.password, timeout=int(p["rewind_timeout"]))
        except ServerError as exc:
            server.put_back(aside)
            self.result["diverged_copy"] = None
            self.fail("pg_basebackup could not re-clone %s from %s: %s. The node is left stopped with its data "
                      "directory as it was" % (server.data_dir, self.primary_where, exc))
        self.result["copied_bytes"] = directory_bytes(server.data_dir)
        # pg_basebackup copied the primary's config files (its port, its hba): put the node's own back
        restore(server, own, CONFIG_FILES)
        server.set_auto_conf(self.standby_settings())
        server.write_standby_signal()
        try:
            server.start(timeout=self.start_timeout())
        except ServerError as exc:
            self.fail("%s was re-cloned from %s (its diverged data directory is kept in %s), but it did not start: "
                      "%s; see its server log %s" % (server.data_dir, self.primary_where, aside, exc, server.log_file))
        ok, why = self.wait_streaming(self.p["wait_timeout"])
        if not ok:
            self.fail("%s was re-cloned from %s (its diverged data directory is kept in %s), but it did not stream "
                      "on timeline %s within %ss (wait_timeout): %s" % (
                          server.data_dir, self.primary_where, aside, self.primary_tli, self.p["wait_timeout"], why))
        self.result["msg"] = ("%s: %s; re-cloned from %s with pg_basebackup, its former data directory kept in %s; it "
                              "now streams on timeline %s" % (
                                  server.data_dir, plan.reason, self.primary_where, aside, self.primary_tli))

    # -- the marker: rejoined means it replays what the primary writes from now on
    def commit_marker(self, purpose):
        """Commit a marker (a logical message) on the primary; its WAL flush position after it.

        synchronous_commit=local: the marker must not wait for a synchronous standby (maybe this very node).
        """
        label = self.p.get("application_name") or self.server.data_dir
        with self.primary_conn.transaction():
            self.primary_conn.execute("SET LOCAL synchronous_commit = local")
            self.primary_conn.execute(_MARKER_SQL, (MARKER_PREFIX, "%s of %s" % (purpose, label)))
        return pg.query_one(self.primary_conn, "SELECT pg_current_wal_flush_lsn()::text AS lsn")["lsn"]

    def verify_replays_marker(self):
        """Commit a marker on the primary and wait (wait_timeout) until the node has replayed past it; else fail.

        Streaming is not enough: a node whose WAL diverged, or whose replay is paused, receives WAL and never
        applies it.
        """
        marker = self.result["marker_lsn"] = self.commit_marker("replay check")
        seen = {}

        def probe():
            conn = self.node_conn
            if conn is None:
                conn, seen["error"] = pg.try_connect(self.node_params(), application_name=APPLICATION_NAME)
                self.node_conn = conn
            if conn is None:
                return None
            row = dict(pg.query_one(conn, _REPLAY_SQL))
            seen["row"] = row
            return row if row["lsn"] and pg.parse_lsn(row["lsn"]) >= pg.parse_lsn(marker) else None

        try:
            row = wait_for(probe, int(self.p["wait_timeout"]), interval=PROBE_SECONDS,
                           what="the node to replay the marker at %s" % marker)[0]
        except WaitTimeout:
            row = seen.get("row") or {}
            self.result["replay_lsn"] = row.get("lsn")
            self.fail("%s is not rejoined: it did not replay the marker committed on the primary %s at %s within %ss "
                      "(wait_timeout): its replay is at %s%s" % (
                          self.server.data_dir, self.primary_where, marker, self.p["wait_timeout"],
                          row.get("lsn") or "unknown (%s)" % seen.get("error"),
                          "; its WAL replay is PAUSED (SELECT pg_wal_replay_resume() on it)" if row.get("paused")
                          else "; its WAL may have diverged from the primary's: see its server log %s and, if it "
                          "did, re-clone it from the primary" % self.server.log_file))
        self.result["replay_lsn"] = row["lsn"]


def run(params, check_mode=False, diff=False, warn=None):
    """Make the node in params['data_dir'] stream from params['primary_host']:params['primary_port'].

    Returns the result dict (changed, action, role_before, ...); raises FollowError with the
    same facts on failure.
    """
    return _Run(params, check_mode, diff).run()


# The options of an entry of run_many()'s nodes: its own always, or the task's unless the entry gives them. The rest
# (primary, logins, method, timeouts) is the task's.
NODE_OWN = ("data_dir", "log_file", "passfile")
NODE_OR_TASK = ("bin_dir", "login_host", "login_port")


def node_params(params, node):
    """run()'s parameters for one entry of params['nodes'] (its application_name defaults to its name)."""
    one = dict((k, v) for k, v in params.items() if k != "nodes")
    one.update((k, node.get(k)) for k in NODE_OWN)
    one.update((k, node[k]) for k in NODE_OR_TASK if node.get(k) is not None)
    one["application_name"] = node.get("application_name") or node["name"]
    return one


def _one(params, node, check_mode, diff, warn):
    """One node's outcome as a loop item reports it: its result (or its failure's facts) with item = its name."""
    try:
        outcome = run(node_params(params, node), check_mode=check_mode, diff=diff, warn=warn)
        outcome["failed"] = False
    except pg.ModuleFailure as exc:
        outcome = dict(exc.facts, failed=True, msg=str(exc))
    except Exception as exc:  # noqa: BLE001 - one node's crash must not hide the others' results
        outcome = dict(changed=False, failed=True, msg="unexpected %s: %s" % (type(exc).__name__, exc))
    outcome["item"] = node["name"]
    return outcome


def run_many(params, check_mode=False, diff=False, warn=None):
    """Make every node of params['nodes'] stream from the primary, all at once (one thread each).

    Each node goes through run() as it would alone (its own checks, its own way back when it fails); the nodes
    do not wait for each other. Returns results (one per node, in the order given, each as a loop item:
    item = name, failed, msg and run()'s facts) and changed; raises ModuleFailure(results=...) naming every node
    that failed, after all of them ended.
    """
    nodes = params["nodes"]
    names = [node["name"] for node in nodes]
    if len(set(names)) != len(names):
        raise pg.ModuleFailure("nodes names a node twice (%s): expected each node once (nodes)" % ", ".join(names))
    notes = []
    results = each_at_once(lambda node: _one(params, node, check_mode, diff, notes.append), nodes)
    for note in notes:
        (warn or (lambda _message: None))(note)
    failed = [item for item in results if item["failed"]]
    outcome = dict(changed=any(item.get("changed") for item in results), results=results)
    if diff:
        outcome["diff"] = [item["diff"] for item in results if item.get("diff")]
    if failed:
        raise pg.ModuleFailure("%d of %d nodes did not come to stream from %s:%s: %s" % (
            len(failed), len(results), params["primary_host"], params["primary_port"],
            "; ".join("%s: %s" % (item["item"], item["msg"]) for item in failed)), **outcome)
    outcome["msg"] = "; ".join(item.get("msg") or "%s: nothing to do" % item["item"] for item in results)
    return outcome


def run_any(params, check_mode=False, diff=False, warn=None):
    """The module's engine: run_many() when params['nodes'] is given, else run() for the one node of data_dir."""
    if params.get("nodes"):
        return run_many(params, check_mode=check_mode, diff=diff, warn=warn)
    return run(params, check_mode=check_mode, diff=diff, warn=warn)


def directory_bytes(path):
    """The size of a data directory's files: what a re-clone copied."""
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
    return total


def _close_quietly(conn):
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - closing is best effort
        pass

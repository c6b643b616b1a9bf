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

The decision is taken up front from facts (role, timeline, WAL position, the primary's
timeline history) by pure functions, which the unit tests cover; `run()` gathers the facts,
decides, and acts. Private to the collection: the API may change between releases.
"""

from __future__ import annotations

import os
import re
import socket
import time

from ansible_collections.erlmcp.dr.plugins.module_utils import _postgres as pg
from ansible_collections.erlmcp.dr.plugins.module_utils._pg_server import (
    Server,
    ServerError,
    conninfo,
    unquote_setting,
)
from ansible_collections.erlmcp.dr.plugins.module_utils._wait import WaitTimeout, wait_for

METHODS = ("auto", "follow", "rewind")
# pg_rewind copies these from the source; the node keeps its own (its port, its own hba rules).
CONFIG_FILES = ("postgresql.conf", "postgresql.auto.conf", "pg_hba.conf", "pg_ident.conf")
SIGNAL_FILE = "standby.signal"
MASK = "********"
APPLICATION_NAME = "erlmcp.dr.pg_standby_follow"
MIN_START_TIMEOUT = 120
REWIND_OUTPUT_CHARS = 800


class FollowError(pg.ModuleFailure):
    """A failure to report as is, with the facts gathered so far (never a secret)."""


# ---------------------------------------------------------------- pure helpers (unit-tested)

_PASSWORD_RE = re.compile(r"(\bpassword\s*=\s*)('(?:\\.|[^'\\])*'|[^\s']+)", re.IGNORECASE)


def mask_conninfo(text):
    """A libpq conninfo string with its password replaced by ********; None stays None."""
    if text is None:
        return None
    return _PASSWORD_RE.sub(lambda m: m.group(1) + "'" + MASK + "'", text)


def parse_history(text):
    """A timeline history file ('1<TAB>0/3000060<TAB>reason' lines) -> [(tli, switchpoint), ...]."""
    entries = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 2 or not fields[0].isdigit():
            continue
        try:
            entries.append((int(fields[0]), pg.parse_lsn(fields[1])))
        except ValueError:
            continue
    return entries


def divergence(node_tli, node_lsn, primary_tli, history):
    """Has the node's WAL gone where the primary's history never went?

    Returns (True, why) when following is impossible (pg_rewind is needed), (False, why) when
    the node can follow, (None, why) when the facts do not tell (history or position unknown).
    node_lsn is the furthest WAL the node holds (received or replayed), as text or int.
    """
    if node_tli is None or primary_tli is None:
        return None, "timeline unknown"
    node_tli, primary_tli = int(node_tli), int(primary_tli)
    if node_tli == primary_tli:
        return False, "the node is on the primary's timeline %d" % primary_tli
    if node_tli > primary_tli:
        return True, "the node is on timeline %d, newer than the primary's %d" % (node_tli, primary_tli)
    if history is None:
        return None, "the primary's timeline history could not be read"
    switchpoints = dict(history)
    if node_tli not in switchpoints:
        return True, "the node's timeline %d is not in the primary's history (timeline %d)" % (node_tli, primary_tli)
    position = pg.parse_lsn(node_lsn) if isinstance(node_lsn, str) else node_lsn
    if position is None:
        return None, "the node's WAL position is unknown"
    fork = switchpoints[node_tli]
    if position > fork:
        return True, "the node has WAL up to %s on timeline %d, past %s where the primary's timeline %d forked off" % (
            pg.format_lsn(position), node_tli, pg.format_lsn(fork), primary_tli)
    return False, "the node (at %s on timeline %d) is behind the fork at %s: it can follow onto timeline %d" % (
        pg.format_lsn(position), node_tli, pg.format_lsn(fork), primary_tli)


def same_host(a, b):
    return str(a or "").strip().lower() == str(b or "").strip().lower()


def is_following(receiver, host, port, timeline):
    """The WAL receiver streams from host:port on the given timeline."""
    if not receiver or receiver.get("status") != "streaming":
        return False
    return (same_host(receiver.get("sender_host"), host) and receiver.get("sender_port") == int(port)
            and receiver.get("received_tli") == int(timeline))


def upstream_of(receiver):
    if not receiver or not receiver.get("sender_port"):
        return None
    return "%s:%s" % (receiver.get("sender_host"), receiver.get("sender_port"))


class Plan(object):
    """What to do: action 'none' | 'follow' | 'rewind'.

    how: for follow, 'reload' (running standby, new primary_conninfo) or 'start' (start a stopped
    node as a standby); stop_first: the node runs and must be stopped; fallback: a follow that
    does not reach streaming falls back to rewind (method auto).
    """

    def __init__(self, action, reason, how=None, stop_first=False, fallback=False):
        self.action = action
        self.reason = reason
        self.how = how
        self.stop_first = stop_first
        self.fallback = fallback

    def __repr__(self):
        return "Plan(%r, how=%r, stop_first=%r, fallback=%r)" % (self.action, self.how, self.stop_first, self.fallback)


def choose_action(role, method, allow_stop_primary, already, diverged, why=""):
    """Decide from the facts. role: 'primary' | 'standby' (both running) | 'stopped'.

    already: a running standby already streams from the primary on its timeline.
    diverged: divergence()'s verdict (True / False / None) for a running standby.
    Raises FollowError when a precondition forbids any change.
    """
    if method not in METHODS:
        raise FollowError("method must be one of %s, not %r" % (", ".join(METHODS), method))
    if role == "standby":
        if already:
            return Plan("none", "already streaming from the primary on its timeline")
        if method == "rewind":
            return Plan("rewind", "method=rewind", stop_first=True)
        if diverged:
            if method == "follow":
                raise FollowError(
                    "cannot follow: %s; the node needs pg_rewind (method=rewind or method=auto)" % why)
            return Plan("rewind", "cannot follow: %s" % why, stop_first=True)
        return Plan("follow", why or "running standby", how="reload", fallback=(method == "auto"))
    if role == "primary":
        if not allow_stop_primary:
            raise FollowError(
                "the node is running as a PRIMARY (not in recovery) and may be taking writes: fence it first "
                "(erlmcp.dr.pg_fence) or set allow_stop_primary=true to let this module stop it")
        if method == "follow":
            return Plan("follow", "method=follow: restart the former primary as a standby without pg_rewind",
                        how="start", stop_first=True)
        return Plan("rewind", "a former primary: pg_rewind decides whether its history diverged", stop_first=True)
    if role == "stopped":
        if method == "follow":
            return Plan("follow", "method=follow: start the stopped node as a standby without pg_rewind", how="start")
        return Plan("rewind", "a stopped node: pg_rewind decides whether its history diverged")
    raise FollowError("unknown node role %r" % (role,))


def short_rewind_output(text, limit=REWIND_OUTPUT_CHARS):
    """pg_rewind's own messages, without progress lines, cut to a few hundred characters."""
    lines = []
    for raw in re.split(r"[\r\n]+", text or ""):
        line = raw.strip()
        if not line or re.match(r"^\d+/\d+ kB \(\d+%\) copied", line):
            continue
        lines.append(line)
    out = "\n".join(lines)
    return out if len(out) <= limit else "..." + out[-(limit - 3):]


def rewind_errors(text):
    """The error lines of pg_rewind's output (its last line when it printed none), joined by '; '."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"\b(error|fatal|FATAL|ERROR):", line)]
    return "; ".join(errors or lines[-1:]) or "no output"


def no_rewind_required(text):
    return "no rewind required" in (text or "")


_SETTING_LINE_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=?\s*(.*)$")


def conf_value(texts, name):
    """The value a setting takes in config file texts read in order (the last one wins).

    Follows no include directives: enough for primary_conninfo / cluster_name / primary_slot_name.
    """
    value = None
    for text in texts:
        for line in (text or "").splitlines():
            match = _SETTING_LINE_RE.match(line)
            if not match or match.group(1).lower() != name:
                continue
            raw = match.group(2)
            raw = _strip_comment(raw)
            value = unquote_setting(raw)
    return value


def _strip_comment(raw):
    """Drop a trailing # comment that is not inside a quoted value."""
    quoted = False
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "'":
            if quoted and i + 1 < len(raw) and raw[i + 1] == "'":
                i += 2
                continue
            quoted = not quoted
        elif ch == "\\" and quoted:
            i += 2
            continue
        elif ch == "#" and not quoted:
            return raw[:i].strip()
        i += 1
    return raw.strip()


# ---------------------------------------------------------------- gathering facts


def _connect(params, what):
    try:
        return pg.connect(params, application_name=APPLICATION_NAME)
    except pg.PgError as exc:
        raise FollowError("%s: %s" % (what, exc)) from None


def _check_replication_login(params):
    """Log in to the primary as the replication user, as the standby's WAL receiver will."""
    conn_params = dict(host=params["primary_host"], port=params["primary_port"], user=params["replication_user"],
                       password=params["replication_password"], dbname="replication",
                       connect_timeout=params.get("connect_timeout") or 5)
    where = "%s:%s" % (params["primary_host"], params["primary_port"])
    try:
        conn = pg.psycopg.connect(replication="true", application_name=APPLICATION_NAME, **conn_params)
    except pg.psycopg.Error as exc:
        detail = pg.describe_connect_error(exc, conn_params).replace("(login_password)", "(replication_password)")
        raise FollowError(
            "the standby could not stream: replication login to %s as %s failed: %s; check replication_user, "
            "replication_password and the primary's pg_hba.conf 'replication' rules" % (
                where, params["replication_user"], detail)) from None
    conn.close()


def _read_history(conn, timeline):
    """The primary's timeline history as [(tli, switchpoint)]; [] on timeline 1; None if unreadable."""
    if not timeline or int(timeline) <= 1:
        return []
    try:
        row = pg.query_one(conn, "SELECT pg_read_file(%s) AS content", ("pg_wal/%08X.history" % int(timeline),))
    except pg.psycopg.Error:
        return None
    return parse_history(row["content"]) if row else None


def _setting(conn, name):
    """A setting's value; None when it is unknown or this login may not read it."""
    try:
        row = pg.query_one(conn, "SELECT current_setting(%s, true) AS value", (name,))
    except pg.psycopg.Error:
        return None
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


# ---------------------------------------------------------------- running


def defaults():
    """Every option's default, as the module's argument spec has it (for callers outside Ansible)."""
    values = dict((name, spec.get("default")) for name, spec in pg.connection_argument_spec().items())
    values.update(bin_dir=None, log_file=None, replication_user="replicator", replication_password=None,
                  application_name=None, method="auto", allow_stop_primary=False, wait_timeout=60)
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
        self.result = dict(
            changed=False, action="none", role_before=None, timeline_before=None, timeline_after=None,
            primary_timeline=None, receive_lsn=None, streaming=False, upstream=None, rewind_output=None,
            primary_conninfo=None, seconds=0.0,
        )
        self.node_conn = None
        self.primary_conn = None

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
        for conn in (self.node_conn, self.primary_conn):
            if conn is not None:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001 - closing is best effort
                    pass
        self.node_conn = self.primary_conn = None

    def close_node(self):
        if self.node_conn is not None:
            try:
                self.node_conn.close()
            except Exception:  # noqa: BLE001
                pass
            self.node_conn = None

    # -- the whole thing
    def run(self):
        errors = (ServerError, pg.PgError) + ((pg.psycopg.Error,) if pg.psycopg is not None else ())
        try:
            return self._run()
        except errors as exc:
            self.fail(str(exc).strip())
        finally:
            self.close()

    def _run(self):
        p = self.p
        if int(p["wait_timeout"]) <= 0:
            self.fail("wait_timeout must be a positive number of seconds, not %s" % p["wait_timeout"])
        server = self.server = Server(p["data_dir"], p.get("bin_dir"), p.get("log_file"))
        if server.status()["state"] == "missing":
            self.fail("no PostgreSQL data directory at %s (data_dir)" % server.data_dir)

        # 1. the new primary: reachable, a primary, same cluster, replication login works
        self.primary_conn = _connect(self.primary_params(), "the new primary %s (primary_host/primary_port) cannot "
                                     "be queried" % self.primary_where)
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

        # 2. the node as it is now
        running = server.is_running()
        node = None
        if running:
            self.node_conn = _connect(self.node_params(), "PostgreSQL in %s is running but cannot be reached at %s "
                                      "(login_host/login_port)" % (server.data_dir, pg.endpoint(self.node_params())))
            served = _setting(self.node_conn, "data_directory")
            if served and os.path.realpath(served) != os.path.realpath(server.data_dir):
                self.fail("%s serves the data directory %s, not %s: login_host/login_port and data_dir must name "
                          "the same node" % (pg.endpoint(self.node_params()), served, server.data_dir))
            if _same_server(self.node_conn, self.primary_conn):
                self.fail("primary_host/primary_port (%s) is this node itself: point them at the new primary"
                          % self.primary_where)
            node = pg.node_state(self.node_conn)
            role = node["role"]
            timeline = node["timeline"]
            current_conninfo = _setting(self.node_conn, "primary_conninfo") or None
            cluster_name = _setting(self.node_conn, "cluster_name")
            slot = _setting(self.node_conn, "primary_slot_name")
        else:
            role = "stopped"
            timeline = int(control.get("Latest checkpoint's TimeLineID") or 0) or None
            texts = [server.read_file("postgresql.conf"), server.read_file("postgresql.auto.conf")]
            current_conninfo = conf_value(texts, "primary_conninfo") or None
            cluster_name = conf_value(texts, "cluster_name")
            slot = conf_value(texts, "primary_slot_name")
        self.result.update(role_before=role, timeline_before=timeline, timeline_after=timeline)
        if node:
            self._report_state(node)

        app_name = p.get("application_name") or cluster_name or socket.gethostname()
        new_conninfo = conninfo(host=p["primary_host"], port=p["primary_port"], user=p["replication_user"],
                                password=p.get("replication_password"), application_name=app_name)
        self.new_conninfo = new_conninfo
        self.result["primary_conninfo"] = mask_conninfo(new_conninfo)

        # 3. decide
        already = role == "standby" and is_following(node["wal_receiver"], p["primary_host"], p["primary_port"],
                                                     self.primary_tli)
        diverged, why = (None, "")
        if role == "standby" and not already:
            history = _read_history(self.primary_conn, self.primary_tli)
            diverged, why = divergence(timeline, node["position_lsn"], self.primary_tli, history)
        try:
            plan = choose_action(role, p["method"], p["allow_stop_primary"], already, diverged, why)
        except FollowError as exc:
            self.fail(str(exc))
        self.result["action"] = plan.action
        if self.want_diff:
            self.result["diff"] = dict(
                before=dict(primary_conninfo=mask_conninfo(current_conninfo), role=role),
                after=dict(primary_conninfo=mask_conninfo(new_conninfo) if plan.action != "none"
                           else mask_conninfo(current_conninfo),
                           role="standby" if plan.action != "none" else role),
            )
        if plan.action == "none":
            self.result["msg"] = "%s already streams from %s on timeline %s" % (
                server.data_dir, self.primary_where, self.primary_tli)
            return self.finish()

        if slot:
            exists = pg.query_one(self.primary_conn, "SELECT count(*) AS n FROM pg_replication_slots "
                                  "WHERE slot_name = %s AND slot_type = 'physical'", (slot,))["n"]
            if not exists:
                self.fail("the node uses primary_slot_name=%r but %s has no such physical replication slot: create it "
                          "on the primary first (or reset primary_slot_name)" % (slot, self.primary_where))
        if p.get("replication_password"):
            _check_replication_login(p)

        if self.check_mode:
            self.result["changed"] = True
            self.result["timeline_after"] = self.primary_tli
            self.result["msg"] = "would %s (%s): %s would stream from %s on timeline %s%s" % (
                plan.action, plan.reason, server.data_dir, self.primary_where, self.primary_tli,
                " (falling back to pg_rewind if it does not stream)" if plan.fallback else "")
            return self.finish()

        # 4. act
        self.saved = snapshot(server)
        self.result["changed"] = True
        if plan.action == "follow" and plan.how == "reload":
            self._follow_reload(plan)
        elif plan.action == "follow":
            self._follow_start(plan)
        else:
            self._rewind(stop_first=plan.stop_first, reason=plan.reason)
        return self.finish()

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
        """Poll the node until its WAL receiver streams from the primary on the primary's timeline."""
        seen = {}
        params = self.node_params()

        def probe():
            conn, error = pg.try_connect(params, application_name=APPLICATION_NAME)
            if conn is None:
                seen["error"] = error
                return None
            with conn:
                state = pg.node_state(conn)
            seen["state"] = state
            if state["in_recovery"] and is_following(state["wal_receiver"], self.p["primary_host"],
                                                     self.p["primary_port"], self.primary_tli):
                return state
            return None

        try:
            state = wait_for(probe, timeout, interval=0.2, what="streaming from %s" % self.primary_where)[0]
        except WaitTimeout:
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
            server.stop(mode="fast")
        server.set_auto_conf({"primary_conninfo": self.new_conninfo})
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
        self.result.update(streaming=False, upstream=None)
        self.fail("%s was started as a standby of %s without pg_rewind, but %s. It is left stopped with its config "
                  "files and standby.signal as they were; use method=rewind (or auto)" % (
                      server.data_dir, self.primary_where, error))

    def start_timeout(self):
        return max(int(self.p["wait_timeout"]), MIN_START_TIMEOUT)

    def _stop_quietly(self):
        try:
            self.server.stop(mode="fast")
        except ServerError:
            pass

    # -- rewind
    def _rewind(self, stop_first, reason):
        p, server = self.p, self.server
        self.result["action"] = "rewind"
        if stop_first:
            self.close_node()
            server.stop(mode="fast")
        pg.checkpoint(self.primary_conn)  # pg_rewind reads the source's control file: make it current
        own = snapshot(server)
        source = conninfo(host=p["primary_host"], port=p["primary_port"], user=p["login_user"],
                          dbname=p.get("login_db") or "postgres", connect_timeout=p.get("connect_timeout") or 5)
        try:
            output = server.pg_rewind(source, password=p.get("login_password"))
        except ServerError as exc:
            restore(server, self.saved, CONFIG_FILES + (SIGNAL_FILE,))
            output = short_rewind_output(re.sub(r"^pg_rewind failed \(rc=\d+\): ", "", str(exc)))
            self.result.update(streaming=False, upstream=None, rewind_output=output)
            self.fail("pg_rewind could not rewind %s from %s (%s): %s. The node is left stopped with its config files "
                      "as they were. Way out: re-clone it from the primary with pg_basebackup (e.g. pg_basebackup -h "
                      "%s -p %s -U %s -D <empty dir> -X stream -R), keeping its own postgresql.conf/pg_hba.conf" % (
                          server.data_dir, self.primary_where, reason, rewind_errors(output),
                          p["primary_host"], p["primary_port"], p["replication_user"]))
        # pg_rewind copied the source's config files (its port, its hba): put the node's own back
        restore(server, own, CONFIG_FILES)
        self.result["rewind_output"] = short_rewind_output(output)
        server.set_auto_conf({"primary_conninfo": self.new_conninfo})
        server.write_standby_signal()
        try:
            server.start(timeout=self.start_timeout())
        except ServerError as exc:
            self.fail("%s: %s, then configured as a standby of %s, but it did not start: %s; see its server log %s" % (
                server.data_dir, "pg_rewind found no rewind required" if no_rewind_required(output)
                else "rewound with pg_rewind", self.primary_where, exc, server.log_file))
        ok, why = self.wait_streaming(self.p["wait_timeout"])
        what = "pg_rewind found no rewind required" if no_rewind_required(output) else "rewound with pg_rewind"
        if not ok:
            self.fail("%s: %s and started as a standby of %s, but it did not stream on timeline %s within %ss "
                      "(wait_timeout): %s; see its server log" % (
                          server.data_dir, what, self.primary_where, self.primary_tli, self.p["wait_timeout"], why))
        self.result["msg"] = "%s: %s (%s); it now streams from %s on timeline %s" % (
            server.data_dir, what, reason, self.primary_where, self.primary_tli)


def run(params, check_mode=False, diff=False):
    """Make the node in params['data_dir'] stream from params['primary_host']:params['primary_port'].

    Returns the result dict (changed, action, role_before, ...); raises FollowError with the
    same facts on failure.
    """
    return _Run(params, check_mode, diff).run()

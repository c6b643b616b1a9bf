# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Logic of erlmcp.dr.pg_fence: stop a primary from taking writes, or let it take them again.

Two methods:

* stop: the server is stopped (fenced) or started (unfenced) with pg_ctl; a stopped server's
  final WAL position comes from pg_controldata;
* read_only: default_transaction_read_only is set (ALTER SYSTEM + reload) and every other
  client session is terminated, or the setting is reset.

`run()` does either and returns the result dict. Private to the collection: the API may change
between releases.
"""

from __future__ import annotations

import time

from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.data_dir_identity import check_data_dir_serves
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.server import Server
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.sql import (
    PgError,
    connect,
    connection_params,
    current_wal_lsn,
    query_all,
    query_one,
    translate_errors,
)
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import WaitTimeout, wait_for

APPLICATION_NAME = "erlmcp.dr.pg_fence"
SETTING = "default_transaction_read_only"
CLEAN_STATES = ("shut down", "shut down in recovery")
DEFAULT_PORT = 5432

_SESSIONS_SQL = """
SELECT pid, usename, datname, application_name, client_addr::text AS client_addr, state
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
ORDER BY pid
"""


# ---------------------------------------------------------------- method: stop


def final_position(server):
    """Where the stopped server's WAL ends: its latest (shutdown) checkpoint, per pg_controldata."""
    data = server.controldata()
    timeline = data.get("Latest checkpoint's TimeLineID")
    state = data.get("Database cluster state")
    return dict(final_lsn=data.get("Latest checkpoint location"),
                final_timeline=int(timeline) if timeline and timeline.isdigit() else None,
                cluster_state=state, clean_shutdown=state in CLEAN_STATES)


def fence_stop(params, check_mode, warn=None):
    p = params
    if not p["data_dir"]:
        raise ModuleFailure("method=stop needs data_dir (the server's data directory on this host)")
    server = Server(p["data_dir"], bin_dir=p["bin_dir"], log_file=p["log_file"])
    server.wait_orphans_gone(p["wait_timeout"])  # a killed postmaster: fenced once its children are gone too
    status = server.status()
    if status["state"] == "missing":
        raise ModuleFailure("no PostgreSQL data directory at %s: found no PG_VERSION there, expected an initialised "
                            "cluster (data_dir)" % server.data_dir)
    want_fenced = p["state"] == "fenced"
    if p.get("login_port"):
        # The runbooks name the server they read (login_host/login_port): the data directory must be that server.
        # Also when there is nothing to stop: a stopped data directory while its server answers at host:port means
        # the server the run read is not fenced at all.
        check_data_dir_serves(server, connection_params(p), "fencing" if want_fenced else "unfencing")
    was_running = status["state"] == "running"
    changed = was_running == want_fenced  # fenced = stopped
    if changed and not check_mode:
        if want_fenced:
            # False: it was dying already (killed just before): this fence stopped nothing
            changed = was_running = server.stop(mode="fast", timeout=p["wait_timeout"])
        else:
            server.start(timeout=p["wait_timeout"])
    running = (not want_fenced) if changed else was_running
    result = dict(changed=changed, was_running=was_running, running=running, was_fenced=not was_running,
                  fenced=not running, final_lsn=None, final_timeline=None, cluster_state=None, clean_shutdown=None)
    if not running and (not check_mode or not was_running):
        result.update(final_position(server))
        if not result["clean_shutdown"]:
            (warn or _no_warning)(
                "%s was not shut down cleanly (Database cluster state: %s): final_lsn is its last checkpoint and "
                "its WAL may go on past it" % (server.data_dir, result["cluster_state"]))
    return result


# ---------------------------------------------------------------- method: read_only


def effective_setting(conn):
    return query_one(conn, "SELECT setting, source, sourcefile FROM pg_settings WHERE name = %s", (SETTING,))


def wait_setting(conn, want, timeout):
    """Poll this session (which the postmaster signals after it reloads) until the setting is `want`."""
    def probe():
        row = effective_setting(conn)
        return row if row["setting"] == want else None

    try:
        return wait_for(probe, timeout, what="%s = %s" % (SETTING, want))[0]
    except WaitTimeout:
        row = effective_setting(conn)
        raise PgError("%s is still %s after %ss (wait_timeout), expected %s: it is set by %s%s" % (
            SETTING, row["setting"], timeout, want, row["source"],
            " in " + row["sourcefile"] if row["sourcefile"] else "")) from None


def terminate_sessions(conn, timeout):
    """Terminate every other client backend and wait (deadline) until they are gone."""
    sessions = [dict(r) for r in query_all(conn, _SESSIONS_SQL)]
    pids = [s["pid"] for s in sessions]
    if not pids:
        return sessions
    query_all(conn, "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))

    def gone():
        row = query_one(conn, "SELECT count(*) AS n FROM pg_stat_activity WHERE pid = ANY(%s::int[])", (pids,))
        return row["n"] == 0

    try:
        wait_for(gone, timeout, what="terminated sessions to end")
    except WaitTimeout:
        raise PgError("sessions %s did not end within %ss (wait_timeout) after pg_terminate_backend"
                      % (", ".join(str(p) for p in pids), timeout)) from None
    return sessions


def fence_read_only(params, check_mode):
    p = params
    conn = connect(connection_params(dict(p, login_port=p.get("login_port") or DEFAULT_PORT)), APPLICATION_NAME)
    with conn:
        role = "standby" if query_one(conn, "SELECT pg_is_in_recovery() AS r")["r"] else "primary"
        was_fenced = effective_setting(conn)["setting"] == "on"
        want_fenced = p["state"] == "fenced"
        changed = was_fenced != want_fenced
        sessions = []
        if changed and check_mode:
            if want_fenced:
                sessions = [dict(r) for r in query_all(conn, _SESSIONS_SQL)]
        elif changed:
            if want_fenced:
                conn.execute("ALTER SYSTEM SET %s = on" % SETTING)
                conn.execute("SELECT pg_reload_conf()")
                wait_setting(conn, "on", p["wait_timeout"])
                sessions = terminate_sessions(conn, p["wait_timeout"])
            else:
                conn.execute("ALTER SYSTEM RESET %s" % SETTING)
                conn.execute("SELECT pg_reload_conf()")
                wait_setting(conn, "off", p["wait_timeout"])
        current = current_wal_lsn(conn) if role == "primary" else None
    return dict(changed=changed, was_running=True, was_fenced=was_fenced,
                fenced=want_fenced if changed else was_fenced, role=role,
                terminated_sessions=sessions, current_lsn=current)


# ---------------------------------------------------------------- the whole thing


def _no_warning(message):
    pass


def run(params, check_mode=False, diff=False, warn=None):
    """Fence (params['state']=fenced) or unfence the node by params['method'] (stop | read_only).

    Returns the result dict (changed, was_fenced, fenced, fence_seconds, ...); raises ModuleFailure
    with the facts gathered so far on failure. warn(message) is called for each warning (module.warn).
    """
    warn = warn or _no_warning
    p = params
    result = dict(changed=False, state=p["state"], method=p["method"])
    started = time.monotonic()
    facts = dict(changed=False, state=p["state"], method=p["method"])
    with translate_errors(facts, "while fencing"):
        if p["method"] == "stop":
            result.update(fence_stop(p, check_mode, warn))
        else:
            result.update(fence_read_only(p, check_mode))
    result["fence_seconds"] = round(time.monotonic() - started, 3)
    if diff:
        result["diff"] = dict(before={"fenced": result["was_fenced"]}, after={"fenced": result["fenced"]})
    return result

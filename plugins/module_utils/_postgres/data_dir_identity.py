# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Is this data directory the server the run read at host:port? Checked before any stop, start or rewind.

A run reads a server over SQL at host:port (pg_host/pg_port) and acts on a data directory by path
(pg_data_dir): when the two name different servers (two instances on one host with their ports or data
directories swapped in the inventory, an inventory naming another lab's ports), the run would stop, start or
rewind a server it never read. Members of one cluster share a system identifier, so the identifier alone cannot
tell two of them apart: the port the postmaster really listens on (postmaster.pid, or the config files of a
stopped server) and the data directory the server at host:port says it serves can. Private to the collection.
"""

from __future__ import annotations

import os

from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import sql as pg

_SERVED_SQL = """
SELECT (SELECT system_identifier::text FROM pg_control_system()) AS system_identifier,
       current_setting('port')::int AS port,
       floor(extract(epoch FROM pg_postmaster_start_time()))::bigint AS started
"""
# Superusers and pg_read_all_settings only: read apart, so that a login without it still gets the rest.
_DATA_DIRECTORY_SQL = "SELECT current_setting('data_directory') AS data_directory"
# postmaster.pid's third line is the postmaster's start time (epoch seconds, LOCK_FILE_LINE_START_TIME), its fourth
# the port it listens on (LOCK_FILE_LINE_PORT).
PID_FILE_START_LINE = 2
PID_FILE_PORT_LINE = 3
DEFAULT_PORT = 5432


class DataDirMismatch(pg.ModuleFailure):
    """The data directory is not the server at host:port: nothing was stopped, started or rewound."""


def read_served(conn):
    """What the server behind conn says about itself: system_identifier, port, data_directory (None when this login
    may not read it)."""
    served = dict(pg.query_one(conn, _SERVED_SQL))
    try:
        served["data_directory"] = pg.query_one(conn, _DATA_DIRECTORY_SQL)["data_directory"]
    except Exception as exc:  # noqa: BLE001 - a login that may not read it: the port and identifier still tell
        if not pg.is_driver_error(exc):
            raise
        served["data_directory"] = None
    return served


def ask_served(conn_params, application_name="erlmcp.dr"):
    """read_served() of the server at conn_params' host:port; None when nothing there can be read (down, refused,
    a login error): then only the data directory's own files tell which port it belongs to."""
    conn, dummy = pg.open_connection(conn_params, application_name)
    if conn is None:
        return None
    try:
        return read_served(conn)
    except Exception as exc:  # noqa: BLE001 - a server that answers but cannot be read is treated as unread
        if pg.is_driver_error(exc):
            return None
        raise
    finally:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


def data_dir_port(server, running):
    """The port the data directory's server listens on: postmaster.pid's while it runs, else its config files' in
    the data directory; (None, why) when they name none (a port given on the command line or in the environment, a
    config file kept elsewhere, as Debian does): unknown, which refuses nothing."""
    if running:
        lines = server.lock_file()
        text = lines[PID_FILE_PORT_LINE].strip() if len(lines) > PID_FILE_PORT_LINE else ""
        if text.isdigit():
            return int(text), "postmaster.pid"
    text = server.conf_setting("port")
    if text and str(text).strip().isdigit():
        return int(str(text).strip()), "its config files"
    return None, "nothing (no port in its config files)"


def lock_file_start(server):
    """The start time postmaster.pid records (epoch seconds), None without one."""
    lines = server.lock_file()
    text = lines[PID_FILE_START_LINE].strip() if len(lines) > PID_FILE_START_LINE else ""
    return int(text) if text.isdigit() else None


def mismatch(data_dir, running, dir_port, port_source, sysid, where, port, served, lock_started=None):
    """Why the data directory is not the server at where (host:port), or None when it is. Pure: unit-tested.

    served: read_served() at where, or None when nothing could be read there. lock_started: the start time in the
    data directory's postmaster.pid: a postmaster this process cannot see (another PID namespace, such as the
    execution environment's container) is still this directory's when the server at where says it serves this very
    directory and started at that moment (postmaster.pid's start time).
    """
    names = "the inventory's pg_data_dir and pg_host/pg_port must name the same server"
    own = "%s (port %s per %s, system identifier %s)" % (data_dir, dir_port, port_source, sysid or "unknown")
    if served is None:
        if dir_port is not None and dir_port != int(port):
            return "the data directory %s is not the server at %s: %s; %s" % (data_dir, where, own, names)
        return None
    read = "the server read at %s (port %s, system identifier %s%s)" % (
        where, served.get("port"), served.get("system_identifier"),
        ", data directory %s" % served["data_directory"] if served.get("data_directory") else "")
    if not running and not _seen_through_its_lock_file(data_dir, served, lock_started):
        return "%s is not running, but %s is: they are different servers; %s" % (own, read, names)
    served_dir = served.get("data_directory")
    if served_dir and os.path.realpath(served_dir) != os.path.realpath(data_dir):
        return "%s is not %s; %s" % (own, read, names)
    sysid_differs = sysid is not None and str(sysid) != str(served.get("system_identifier"))
    if sysid_differs or dir_port not in (None, int(served.get("port") or port)):
        return "%s is not %s; %s" % (own, read, names)
    return None


# postmaster.pid's time is taken when the postmaster starts, pg_postmaster_start_time() a moment later: they may
# straddle a second.
START_TIME_SLACK_SECONDS = 2


def _seen_through_its_lock_file(data_dir, served, lock_started):
    served_dir, started = served.get("data_directory"), served.get("started")
    return (lock_started is not None and served_dir is not None and started is not None
            and abs(int(started) - int(lock_started)) <= START_TIME_SLACK_SECONDS
            and os.path.realpath(served_dir) == os.path.realpath(data_dir))


def check_data_dir_serves(server, conn_params, what="stopping, starting or rewinding", served=False):
    """Raise DataDirMismatch naming both servers unless server's data directory is the one at conn_params'
    host:port. served: what the run already read there (read_served()), None for nothing readable; by default it is
    read now. Call it before any stop, start or rewind of server."""
    running = server.is_running()
    if served is False:
        served = ask_served(conn_params)
    dir_port, source = data_dir_port(server, running)
    try:
        sysid = server.controldata().get("Database system identifier")
    except pg.PgError:
        # pg_controldata could not run: the port and the served directory still tell; a broken tool must not stop
        # a fence (the fence itself says what it could not read)
        sysid = None
    why = mismatch(server.data_dir, running, dir_port, source, sysid, pg.endpoint(conn_params),
                   conn_params.get("port") or DEFAULT_PORT, served, lock_file_start(server))
    if why:
        raise DataDirMismatch("refused before %s anything: %s" % (what, why))

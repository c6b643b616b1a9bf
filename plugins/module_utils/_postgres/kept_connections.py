# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connections one task keeps between the reads it makes of the same nodes.

erlmcp.dr.pg_begin reads the cluster, takes the run lock and reads it again, in one worker: every read opened and
closed a connection per node, and a PostgreSQL connection costs more than the read (about 5 ms of CPU on the lab,
half of it libpq's SCRAM, half the server's backend start and authentication, against 0.1 ms for the read's
queries on an open connection). Within `kept()`, a read hands its connection back instead of closing it, and the
next read of the same node, as the same user with the same password, database and application name, takes it
again. Every read still asks the server at that moment (autocommit: each query sees the state as it is when it
runs). A kept connection that fails is closed, and the read connects afresh, so what it reports is what a new
connection finds (a node that went down says "connection refused", not that a query failed). Outside `kept()`,
nothing is kept: every other caller opens and closes as before. The scope closes what it kept when it ends.

Threads: the reads ask their nodes at once (one thread each); a connection is taken out of the pool while a read
uses it, so no two threads share one. Private to the collection: the API may change between releases.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.sql import open_connection

_guard = threading.Lock()
_pool = None  # {key: connection} while a kept() scope is open; None outside one


@contextmanager
def kept():
    """While it lasts, reads keep their connections for the next read of the same node; closed at its end."""
    global _pool
    with _guard:
        outer = _pool is not None
        if not outer:
            _pool = {}
    try:
        yield
    finally:
        if not outer:
            with _guard:
                pool, _pool = _pool, None
            for connection in pool.values():
                _close(connection)


def open_for_read(conn_params, application_name):
    """(connection, error, reused): a kept connection to that node when there is one, else a new one (or its
    error, a PgError, as sql.open_connection gives it)."""
    key = _key(conn_params, application_name)
    with _guard:
        connection = _pool.pop(key, None) if _pool is not None else None
    if connection is not None and not connection.closed:
        return connection, None, True
    connection, error = open_connection(conn_params, application_name)
    return connection, error, False


def hand_back(connection, conn_params, application_name, healthy=True):
    """A read is done with its connection: kept for the next read inside kept() when it is healthy, else closed."""
    key = _key(conn_params, application_name)
    if healthy and not connection.closed:
        with _guard:
            if _pool is not None and key not in _pool:
                _pool[key] = connection
                return
    _close(connection)


def _key(conn_params, application_name):
    return (conn_params.get("host"), conn_params.get("port"), conn_params.get("user"), conn_params.get("password"),
            conn_params.get("dbname"), application_name)


def _close(connection):
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - closing a broken connection: nothing left to do
        pass

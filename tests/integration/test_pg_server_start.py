"""Server.start (every module that starts PostgreSQL: a rejoin, a follow, an unfence, a restore) on a real standby:
a start is seen ready (postmaster.pid polled, pg_ctl start -w still running), and a start that cannot work is
pg_ctl's clear error, at once, with nothing left running: its own poll must never take a failed start for a
started one."""

from __future__ import annotations

import pytest

from erlmcp_dr import paths
from erlmcp_dr.lab.config import alive

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.server import ServerError  # noqa: E402

pytestmark = pytest.mark.integration


def test_a_standby_starts_ready_and_a_broken_setting_is_pg_ctls_error_with_nothing_left_running(fresh_lab):
    server = fresh_lab.node("pg-c").server()
    assert server.stop() is True

    assert server.start(timeout=30) is True
    pid = server.postmaster_pid()
    assert server.is_running() and server.started_since(0)  # its postmaster.pid says ready

    assert server.stop() is True
    kept = server.read_file("postgresql.auto.conf")
    server.write_file("postgresql.auto.conf", kept + "\nshared_buffers = 'not a size'\n")
    with pytest.raises(ServerError, match=r"pg_ctl failed \(rc=1\)"):
        server.start(timeout=30)
    assert not server.is_running() and not alive(pid)

    server.write_file("postgresql.auto.conf", kept)  # as it was: the lab's end check finds pg-c running again
    assert server.start(timeout=30) is True

"""`runbook lab up` on a port another process holds: the error names the holder, and once the port is free the
next `lab up` repairs the half-built lab (the standby left `building`) instead of failing the same way again."""

from __future__ import annotations

import os
import socket

import pytest
from runbook_helpers import _new_cfg, remove_lab

from erlmcp_dr.lab import lifecycle as lab

pytestmark = pytest.mark.integration


def test_lab_up_names_who_holds_a_port_then_repairs_the_half_built_lab():
    cfg = _new_cfg("erlmcp-dr-lab-ports-")
    pg_b = cfg.node("pg-b")
    try:
        with socket.socket() as squatter:  # another program on pg-b's port, as a source port in TIME-WAIT was
            squatter.bind(("127.0.0.1", pg_b.port))
            squatter.listen()
            with pytest.raises(RuntimeError) as refused:
                lab.up(cfg)
        assert str(refused.value).startswith(
            f"port {pg_b.port} (pg-b) is in use: 127.0.0.1:{pg_b.port} listening, held by pid {os.getpid()}")
        assert pg_b.building_marker.exists()  # half-built: copied from pg-a, never started

        repaired = lab.up(cfg)
        assert repaired["ok"], repaired
        assert repaired["primary"] == "pg-a"
        assert not pg_b.building_marker.exists()
        rows = {row["name"]: row for row in repaired["nodes"]}
        assert rows["pg-b"]["state"] == "running" and rows["pg-b"]["role"] != "primary", rows["pg-b"]
    finally:
        remove_lab(cfg)

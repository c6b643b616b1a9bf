"""The lab's DNS servers (lab/dns.py): real Knot, status with serials and sync, stopped by PID, restarted in sync."""

from __future__ import annotations

import os
import stat

import pytest

from erlmcp_dr.lab import dns as lab_dns
from erlmcp_dr.lab import lifecycle as lab

pytestmark = pytest.mark.integration


def test_status_shows_each_server_its_serial_and_the_secondary_in_sync(dns_zone: lab.LabConfig) -> None:
    rows = lab_dns.status(dns_zone)
    assert [(r["name"], r["role"], r["state"]) for r in rows] == [
        ("dns-primary", "primary", "running"), ("dns-secondary", "secondary", "running")]
    assert rows[0]["serial"] == rows[1]["serial"] and rows[1]["in_sync"] and lab_dns.ok(rows)
    text = "\n".join(lab_dns.format_status(rows))
    assert "dns-secondary" in text and "yes" in text
    for srv in lab_dns.servers(dns_zone):
        assert lab_dns.answers(srv, "api") == [lab_dns.REGION_ADDRESSES["a"]]
        assert lab_dns.answers(srv, "health") == [lab_dns.REGION_ADDRESSES["a"]]
    # the primary's config holds the TSIG secret: only its owner reads it
    assert stat.S_IMODE(os.stat(lab_dns.servers(dns_zone)[0].conf_file).st_mode) == 0o600


def test_a_stopped_secondary_is_shown_and_up_brings_it_back_in_sync(dns_zone: lab.LabConfig) -> None:
    secondary = lab_dns.server(dns_zone, "dns-secondary")
    pid = lab_dns.lab_knot_pid(secondary)
    assert pid is not None and lab_dns.stop(secondary)
    rows = lab_dns.status(dns_zone)
    assert rows[1]["state"] == "stopped" and rows[1]["in_sync"] is False and not lab_dns.ok(rows)
    assert rows[0]["state"] == "running"  # only that server's PID was signalled
    assert not lab_dns.stop(secondary)  # not running: nothing to stop
    serial = lab_dns.reset_zone(dns_zone, region="b")  # up (restart + refresh), then one signed UPDATE
    assert lab_dns.status(dns_zone)[1]["serial"] == serial
    assert lab_dns.answers(secondary, "api") == [lab_dns.REGION_ADDRESSES["b"]]

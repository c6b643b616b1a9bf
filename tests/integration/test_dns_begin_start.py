"""dns_cutover's one-task start (erlmcp.dr.dns_begin) on the lab's real Knot primary and secondary: a step that
fails after the zone's lock was taken releases the lock itself (the runbook's `always` releases only a lock the start
handed over), and says which record it could not read.

The rest of the start's behaviour (refusals, the guard, a busy zone, a killed run rolled back from the plan the start
recorded) is tested through the runbook in test_dns_cutover.py, test_dns_guard.py and test_dns_kill.py."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from runbook_helpers import dns_answers, inventory_path, lock_held, run_json, runbook_cli, step, summary

from erlmcp_dr import paths
from erlmcp_dr.lab import dns as lab_dns
from erlmcp_dr.lab import lifecycle as lab

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._lock import store as _lock  # noqa: E402

pytestmark = pytest.mark.integration

A = lab_dns.REGION_ADDRESSES["a"]
OUTSIDE = "api.elsewhere.example."  # a DNS name, so the check before any server passes; not in the lab's zone


def test_a_record_the_start_cannot_read_fails_it_naming_the_record_and_leaves_the_zone_unlocked(
        dns_zone: lab.LabConfig, home: Path) -> None:
    _, result = run_json("run", "dns_cutover", "-i", str(inventory_path(dns_zone)), "-e", f"records={OUTSIDE}",
                         "-e", "region=b", "--yes", expect_rc=1)
    start = step(result, "Start")
    assert start["action"] == "erlmcp.dr.dns_begin" and start["failed"], start
    assert f"reading {OUTSIDE}: " in start["message"] and "is not in the zone" in start["message"], start["message"]
    assert start["data"]["lock"]["held"] and start["data"]["lock_released"] is True, start["data"]
    key = start["data"]["lock"]["key"]
    assert key == f"dns:{lab_dns.ZONE}".lower()
    assert _lock.DirectoryStore(str(dns_zone.root / "locks")).inspect(key, "someone-else")["decision"] == _lock.TAKE
    assert summary(result)["did"] == ["nothing was changed"]
    assert all(values == [A] for values in dns_answers(dns_zone, "api").values())


def test_a_busy_zone_fails_the_start_naming_the_holder_and_the_summary_still_names_the_zone_s_lock(
        dns_zone: lab.LabConfig, home: Path, tmp_path: Path) -> None:
    holder = "it-dns-begin-holder-" + secrets.token_hex(3)
    key = f"dns:{lab_dns.ZONE}".lower()
    with lock_held(dns_zone, key, holder, tmp_path):
        cli = runbook_cli("run", "dns_cutover", "-i", str(inventory_path(dns_zone)), "-e", "region=b", "--yes")
    assert cli.rc == 3 and holder in cli.stderr, cli
    (saved,) = (home / "runs").glob("*/result.json")  # the one run of this test, turned away
    result = json.loads(saved.read_text())
    start = step(result, "Start")
    assert start["failed"] and start["data"]["busy"] is True and start["data"]["holder"]["run_id"] == holder
    assert summary(result)["lock"] == {"key": key} and summary(result)["did"] == ["nothing was changed"]
    assert all(values == [A] for values in dns_answers(dns_zone, "api").values())

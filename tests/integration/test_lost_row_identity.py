"""A lost write is counted lost even when a later row holds its id.

A standby promoted after its primary died continues the table's sequence from the last value whose WAL it received,
so the rows written after the failover take the ids of the rows that were lost. The drill's client (dr_drill's RPO)
and the regional benchmark's writer count an acknowledged write present only when the row under its id carries the
write's session id. Here the lab's application acknowledges writes, then one row is given another session id (what
a later row under a reused id looks like): that write is lost, the others present. (tests/integration/
test_failover_synchronous.py makes the loss itself, for erlmcp_dr.probe's writer.)
"""

from __future__ import annotations

import json
import urllib.request

import pytest
from runbook_helpers import new_lab, sql

from erlmcp_dr import regional_probe
from erlmcp_dr.drill import client as drill_client
from erlmcp_dr.drill.judge import Attempt
from erlmcp_dr.lab import app as lab_app
from erlmcp_dr.lab import app_server

pytestmark = pytest.mark.integration


def write(app: lab_app.LabApp) -> dict:
    request = urllib.request.Request(app.url + "/write", method="POST", data=json.dumps({"note": "n"}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the lab's loopback
        return json.loads(response.read())


def test_a_row_under_a_lost_writes_id_does_not_make_it_present(home):
    with new_lab(app=True) as cfg:
        app = next(app for app in lab_app.apps(cfg) if app.region == "a")
        answers = [write(app) for _ in range(3)]
        reused = answers[1]
        sql(cfg, "pg-a", f"UPDATE {app_server.TABLE} SET session_id = 'a later write' WHERE id = %s", (reused["id"],))

        # The drill's client: the acknowledged ids the database still has.
        attempts = [Attempt("write", 0.0, 0.01, True, row_id=int(a["id"]), session_key=a["session_key"],
                            session_id=a["session_id"]) for a in answers]
        found_ids, _ = drill_client.present(attempts, cfg.node("pg-a").conn_params(), None)
        assert found_ids == sorted(int(a["id"]) for a in answers if a is not reused)

        # The regional benchmark's writer: the rows the serving database lacks.
        report = regional_probe.WriterReport()
        report.acknowledged.extend(filter(None, map(regional_probe.acknowledged_write, answers)))
        assert len(report.acknowledged) == len(answers)
        lost = regional_probe.missing(cfg, report, "pg-a", answers[0]["redis"])
        assert lost["rows"] == [int(reused["id"])] and lost["sessions"] == [], lost

"""dr_drill kind dns_server (docs/drill.md), its pure parts: the default RTO target and where it comes from, the
Chaos Toolkit export of a drill with no recovery runbook, the refusal of an inventory without two authoritative
servers, SIGSTOP accepted for it, readiness's schedule (none by default, the inventory's when it names the kind);
and the drill client's resolver on loopback sockets: a refusing first server (a killed knotd) and a silent one (a
frozen knotd) are passed over for the next, which answers."""

from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace

import dns.message
import dns.rrset
import jsonschema
import pytest

from erlmcp_dr import catalog, params, paths
from erlmcp_dr.drill import chaos as drill_chaos
from erlmcp_dr.drill import judge as drill_judge
from erlmcp_dr.drill import run as drill
from erlmcp_dr.drill.client import PublicName
from erlmcp_dr.errors import ParameterError
from erlmcp_dr.lab import drill as lab_drill

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._region import readiness_judge  # noqa: E402


def test_the_dns_server_kind_is_judged_as_a_single_node_and_has_no_recovery_runbook() -> None:
    targets = drill_judge.targets_for("dns_server", None)
    assert targets["rto_seconds"]["target"] == 5.0 and "single node < 5 s" in targets["rto_seconds"]["source"]
    assert drill_judge.targets_for("dns_server", {"rto_seconds": {"database_primary": 60}})["rto_seconds"][
        "target"] == 5.0
    assert drill.RECOVERY["dns_server"] is None
    assert "dns_server" in lab_drill.FREEZABLE and "dns_server" in drill_judge.KINDS
    seen = drill_judge.outage([], 1.0, 0.02)
    loss = drill_judge.DataLoss(10, [], 0, 0.0, 0.0)
    table = drill_judge.criteria("dns_server", targets, seen, loss, {"rate": 0.0, "errors": 0, "attempts": 10}, None)
    recovery = next(row for row in table if row.name == "recovery_seconds")
    # The client never resolved the name again: nothing measured, the criterion fails (no runbook failed).
    assert recovery.verdict == "fail" and "first resolution of the public name" in recovery.detail


def test_sigstop_and_the_kind_pass_the_playbooks_parameters() -> None:
    runbook = catalog.load("dr_drill")
    assert params.validate(runbook, {"kind": "dns_server", "signal": "SIGSTOP"})["kind"] == "dns_server"


def view(servers: list[str], **variables) -> SimpleNamespace:
    return SimpleNamespace(hosts={"dns": {name: {"dns_port": 1} for name in servers}} if servers else {},
                           all_vars=variables)


def test_an_inventory_without_two_authoritative_servers_is_refused_naming_kind() -> None:
    named = {"dns_zone": "erlmcp.lab.", "dns_records": "api,health"}
    drill.refuse_kind_without_dns("dns_server", view(["dns-primary", "dns-secondary"], **named))
    drill.refuse_kind_without_dns("database_primary", view([]))  # only dns_server needs DNS
    for refused, found in ((view(["dns-primary"], **named), "1 server(s) (dns-primary)"),
                           (view([], **named), "0 server(s)"),
                           (view(["dns-primary", "dns-secondary"], dns_zone="erlmcp.lab."), "dns_records not set")):
        with pytest.raises(ParameterError) as caught:
            drill.refuse_kind_without_dns("dns_server", refused)
        assert caught.value.parameter == "kind" and found in str(caught.value), str(caught.value)


def dns_result() -> dict:
    details = {"kind": "dns_server", "verdict": "passed", "verdict_reason": "r", "restored": True,
               "recovery_runbook": None, "recovery_ok": True,
               "fault": {"target": "dns-primary", "signal": "SIGSTOP"},
               "criteria": [{"name": "rto_seconds", "target": "< 5", "measured": 0.0, "verdict": "pass",
                             "source": "s", "detail": ""}],
               "targets": {"rto_seconds": {"target": 5.0, "source": "s"}}, "measured": {"rto_seconds": 0.0},
               "steady_state_before": {"holds": True, "message": "ok", "deviations": [], "run_id": "x.steady-before"},
               "steady_state_after": {"holds": True, "message": "ok", "deviations": [], "run_id": "x.steady-after"}}
    steps = [{"task": "inject the fault", "action": "dr_drill", "start": "a", "end": "b", "duration": 0.1,
              "failed": False, "data": {"result": {"target": "dns-primary"}}},
             {"task": "the client resolves the public name again (no recovery runbook: the next authoritative "
                      "server answers)", "action": "dr_drill", "start": "b", "end": "c", "duration": 1.0,
              "failed": False, "data": {"result": {"answered_by": "127.0.0.1:2"}}},
             {"task": "restore the steady state", "action": "dr_drill", "start": "c", "end": "d", "duration": 1.0,
              "failed": False, "data": {}}]
    return {"run_id": "x", "runbook": "dr_drill", "inventory": "/inv", "started_at": "a", "ended_at": "d",
            "duration_seconds": 3.0, "steps": steps, "facts": {"summary": {"details": details}}}


def test_the_chaos_export_of_a_dns_server_drill_runs_no_recovery_runbook() -> None:
    schema = drill_chaos.schema()
    experiment, journal = drill_chaos.experiment(dns_result()), drill_chaos.journal(dns_result())
    jsonschema.validate(experiment, {**schema, "$ref": "#/$defs/experiment"})
    jsonschema.validate(journal, {**schema, "$ref": "#/$defs/journal"})
    assert [a["name"] for a in experiment["method"]] == ["inject: SIGSTOP of the dns server (dns-primary)"]
    assert "None" not in str(experiment["method"]) and "no recovery runbook" in experiment["description"]
    assert experiment["rollbacks"][0]["name"].startswith("restore the steady state (SIGCONT or restart of the Knot")
    assert [r["activity"]["name"] for r in journal["rollbacks"]] == ["restore the steady state"]
    assert any(r["activity"]["name"].startswith("the client resolves") for r in journal["run"])


def test_readiness_schedules_no_dns_server_drill_unless_the_inventory_names_it() -> None:
    now = time.time()
    records = [{"kind": "dns_server", "verdict": "passed", "finished_at": now - 86400.0, "run_id": "d1"}]
    default = readiness_judge.drills(records, now, readiness_judge.thresholds({}))
    assert "drill dns_server" not in [c["name"] for c in default]
    named = readiness_judge.drills(records, now, readiness_judge.thresholds({"drill_age_days": {"dns_server": 92}}))
    check = next(c for c in named if c["name"] == "drill dns_server")
    assert check["verdict"] == "pass" and check["source"] == "inventory dr_readiness.drill_age_days"


class Responder:
    """A UDP socket on loopback answering every A query with one address (TTL 7): the server the resolver must
    fall over to."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port, self.address, self.stop = self.sock.getsockname()[1], address, threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                wire, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(wire)
            response = dns.message.make_response(query)
            response.answer.append(dns.rrset.from_text(query.question[0].name, 7, "IN", "A", self.address))
            self.sock.sendto(response.to_wire(), peer)

    def __enter__(self) -> Responder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_resolver_passes_over_a_refusing_and_a_silent_server_to_the_next() -> None:
    with Responder("127.0.1.2") as answering, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # takes the query, never answers: a frozen server
        dead = free_udp_port()  # nothing listens: a killed server, the kernel refuses
        name = PublicName(name="api.erlmcp.lab.", port=8080, timeout=0.2,
                          servers=[("127.0.0.1", dead), ("127.0.0.1", silent.getsockname()[1]),
                                   ("127.0.0.1", answering.port)])
        before = time.monotonic()
        assert name.base_url() == "http://127.0.1.2:8080"
        resolved = name.resolved_since(before)
        assert resolved is not None and resolved["server"] == f"127.0.0.1:{answering.port}"
        refused, timed_out = resolved["failed"]
        # The dead server refused (ICMP port unreachable on the connected socket), it was not waited out.
        assert refused.startswith(f"127.0.0.1:{dead}: ConnectionRefusedError"), refused
        assert timed_out.startswith(f"127.0.0.1:{silent.getsockname()[1]}: Timeout"), timed_out
        assert name.resolved_since(time.monotonic()) is None  # cached (TTL 7): no resolution since

        nobody = PublicName(name="api.erlmcp.lab.", port=8080, timeout=0.2, servers=[("127.0.0.1", dead)])
        with pytest.raises(OSError, match="did not resolve"):
            nobody.base_url()
        assert nobody.resolutions[-1]["server"] is None and nobody.resolved_since(before) is None

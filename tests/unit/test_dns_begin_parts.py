"""The pure parts of dns_cutover's one-task start (erlmcp.dr.dns_begin): the reads' options from the inventory's
settings, a killed run's plan found in its events by the start's action (its task may have any name), and a busy
zone seen by the runner as a run turned away (exit 3)."""

from __future__ import annotations

import json
from pathlib import Path

from erlmcp_dr import runner, timeline
from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._dns import plan, rollback  # noqa: E402

SETTINGS = {"provider": "rfc2136", "zone": "erlmcp.lab.", "hosted_zone_id": None, "endpoint_url": None,
            "timeout": 3.0}
SERVERS = [{"name": "dns-primary", "host": "127.0.0.1", "port": 5353, "role": "primary"},
           {"name": "dns-secondary", "host": "127.0.0.1", "port": 5354, "role": "secondary"}]
PLAN = {"action": "change", "records": [
    {"name": "api.erlmcp.lab.", "current": ["127.0.1.1"], "target": ["127.0.1.2"], "ttl": 30, "change": True}]}


def test_a_read_asks_every_inventory_server_with_the_settings_given_and_no_secret() -> None:
    args = plan.read_args(SETTINGS, SERVERS, "api", "A")
    assert args == {"provider": "rfc2136", "zone": "erlmcp.lab.", "timeout": 3.0, "name": "api", "type": "A",
                    "server": "127.0.0.1", "port": 5353, "servers": SERVERS}
    assert not any(option.startswith(("tsig", "aws_")) for option in args)


def test_a_route53_read_names_no_server() -> None:
    settings = dict(SETTINGS, provider="route53", hosted_zone_id="Z1", endpoint_url="http://127.0.0.1:5000")
    args = plan.read_args(settings, [], "api", "A")
    assert "servers" not in args and "server" not in args and args["hosted_zone_id"] == "Z1"


def test_the_settings_are_the_ones_the_runbook_gives_the_dns_modules() -> None:
    playbook = (Path(__file__).resolve().parents[2] / "playbooks" / "dns_cutover.yml").read_text()
    for option, variable, _default in plan.SETTINGS:
        assert f"{option}: \"{{{{ {variable}" in playbook, (option, variable)


def test_a_killed_run_s_plan_is_found_by_the_start_s_action_whatever_its_task_s_name(tmp_path: Path) -> None:
    events = tmp_path / "job_events"
    events.mkdir()
    for counter, (event, action, res) in enumerate([
            ("runner_on_ok", "erlmcp.dr.runbook_params", {"ansible_facts": {"dr": {}}}),
            ("runner_on_ok", "erlmcp.dr.dns_begin", {"ansible_facts": {"dr_plan": PLAN}}),
            ("runner_on_ok", "ansible.builtin.fail", {})], start=1):
        (events / f"{counter}-x.json").write_text(json.dumps({"counter": counter, "event": event, "event_data": {
            "task": "Start - parameters, inventory, lock the zone", "task_action": action, "res": res}}))
    assert rollback.plan_from_events(str(events)) == PLAN


def test_a_busy_start_of_a_dns_cutover_names_its_holder() -> None:
    holder = {"run_id": "r-2", "runbook": "dns_cutover", "pid": 4343, "host": "ctl-1"}
    busy = timeline.make_step("failed", {"task": "Start - parameters, inventory, lock the zone", "host": "localhost",
                                       "resolved_action": "erlmcp.dr.dns_begin",
                                       "res": {"failed": True, "busy": True, "holder": holder, "msg": "held"}})
    assert runner.busy_holder([busy]) == holder

"""`runbook readiness`'s own exit codes (0 ready, 1 warnings, 2 not ready), kept apart from `runbook run`'s: the
command is registered on the `runbook` parser, and a run that published no verdict is never a ready. The command
against a real lab is in tests/integration/test_readiness_lab.py."""

from __future__ import annotations

import pytest

from erlmcp_dr import cli, readiness_cli


def test_the_readiness_command_is_registered_with_its_exit_codes(capsys):
    args = cli.build_parser().parse_args(["readiness", "-i", "inv.yml", "--json"])
    assert args.handler is readiness_cli.command and args.inventory == "inv.yml" and args.json
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["readiness", "--help"])
    out = capsys.readouterr().out
    assert "0  ready" in out and "1  warnings" in out and "2  not ready" in out


@pytest.mark.parametrize("verdict, code", [("ready", 0), ("warnings", 1), ("not_ready", 2), (None, 2),
                                           ("something else", 2)])
def test_the_verdict_is_the_exit_code_and_no_verdict_is_not_ready(verdict, code):
    found = readiness_cli.as_json({"verdict": verdict, "checks": [{"name": "x"}]}, "run-1", verdict)
    assert found["exit_code"] == code
    assert found["verdict"] == (verdict or "not_ready") and found["run_id"] == "run-1"


def _readiness_task_args() -> dict:
    from pathlib import Path

    import yaml

    play = yaml.safe_load((Path(__file__).resolve().parents[2] / "playbooks" / "readiness.yml").read_text())[0]
    task = next(t for t in play["tasks"] if t["name"] == "Run every readiness check at once")
    return task["erlmcp.dr.readiness"]


@pytest.mark.parametrize(("variables", "expected"), [
    ({}, []), ({"dns_records": "app.example., db.example."}, ["app.example.", "db.example."]),
    ({"dns_records": ["app.example."]}, ["app.example."]),
])
def test_an_inventory_without_dns_records_gives_the_readiness_task_no_records_not_an_undefined_error(
        variables, expected):
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    records = trust_as_template(_readiness_task_args()["dns"]["records"])  # a playbook's text, as Ansible reads it
    assert Templar(loader=DataLoader(), variables=variables).template(records) == expected


def test_the_readiness_task_passes_every_etcd_setting_the_run_lock_reads_and_the_password_apart():
    from erlmcp_dr.paths import ensure_collection_importable

    ensure_collection_importable()
    from ansible_collections.erlmcp.dr.plugins.module_utils._lock.store import ETCD_VARS
    from ansible_collections.erlmcp.dr.plugins.module_utils._region.readiness import LOCK_ETCD_OPTIONS

    args = _readiness_task_args()
    passed = {f"dr_lock_etcd_{name}": value for name, value in args["lock_etcd"].items()}
    passed["dr_lock_etcd_password"] = args["lock_etcd_password"]
    assert set(passed) == set(ETCD_VARS) - {"dr_lock_etcd_ttl"}  # the TTL is the holder's, not a reader's
    assert set(args["lock_etcd"]) == set(LOCK_ETCD_OPTIONS)
    assert all(f"{{{{ {name} | default(omit) }}}}" == value for name, value in passed.items())

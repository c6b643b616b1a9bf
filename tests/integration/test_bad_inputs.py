"""Bad input, whatever its kind, gets a clear error and changes nothing.

Every case runs the real CLI (`runbook run ... --yes --json`, as an operator at 3 a.m. would)
against one shared lab, which must be exactly as it was afterwards: same roles, timelines,
upstreams and postmaster pids, the application's config untouched, no file written by a
template or a shell, no secret in the output. Exit 2 means the CLI refused before anything
started; exit 1 means the playbook refused before its first change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from runbook_helpers import (
    FRESH,
    Cli,
    failure_message,
    host_vars,
    inventory_copy,
    inventory_path,
    new_lab,
    runbook_cli,
    topology,
)

from erlmcp_dr.lab import lifecycle as lab

pytestmark = pytest.mark.integration

MARKER = Path("/tmp/erlmcp-dr-bad-input-marker")
SECRET_VAR = "{{ pg_replication_password }}"


@dataclass(frozen=True)
class Case:
    runbook: str
    args: tuple[str, ...]
    rc: int
    words: tuple[str, ...]  # each must appear in what the operator reads (stderr, or the failed step)
    inventory: Callable[[lab.LabConfig], Path] | None = None
    no_json: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _without_group(data: dict) -> None:
    data["all"]["children"].pop("postgres")


def _empty_group(data: dict) -> None:
    data["all"]["children"]["postgres"]["hosts"] = {}


def _no_login_user(data: dict) -> None:
    data["all"]["vars"].pop("pg_login_user")


def _port(value: Any) -> Callable[[dict], None]:
    return lambda data: host_vars(data, "pg-b").update(pg_port=value)


def _copy(name: str, change: Callable[[dict], None]) -> Callable[[lab.LabConfig], Path]:
    return lambda cfg: inventory_copy(cfg, name, change)


def _raw(name: str, text: str) -> Callable[[lab.LabConfig], Path]:
    def write(cfg: lab.LabConfig) -> Path:
        path = cfg.root / "inventory-copies" / name / "hosts.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path
    return write


SW, FO, RJ = "database_switchover", "database_failover", "database_rejoin"
CASES: dict[str, Case] = {
    # ---- types and ranges: refused by the CLI before anything starts (exit 2)
    "missing required candidate": Case(SW, (), 2, ("candidate", "missing")),
    "negative max_lag_bytes": Case(SW, ("-e", "candidate=pg-b", "-e", "max_lag_bytes=-5"), 2, ("max_lag_bytes",)),
    "text for an int": Case(SW, ("-e", "candidate=pg-b", "-e", "max_lag_bytes=lots"), 2, ("max_lag_bytes",)),
    "negative catchup_timeout": Case(SW, ("-e", "candidate=pg-b", "-e", "catchup_timeout=-1"), 2, ("catchup_timeout",)),
    "zero catchup_timeout": Case(SW, ("-e", "candidate=pg-b", "-e", "catchup_timeout=0"), 2, ("catchup_timeout",)),
    "zero wait_timeout": Case(SW, ("-e", "candidate=pg-b", "-e", "wait_timeout=0"), 2, ("wait_timeout",)),
    "negative wait_timeout": Case(SW, ("-e", "candidate=pg-b", "-e", "wait_timeout=-1"), 2, ("wait_timeout",)),
    "huge wait_timeout": Case(SW, ("-e", "candidate=pg-b", "-e", "wait_timeout=99999999999999999999"), 2,
                              ("wait_timeout",)),
    "float for an int": Case(SW, ("-e", "candidate=pg-b", "-e", "wait_timeout=1.5"), 2, ("wait_timeout",)),
    "list for an int": Case(SW, ("-e", "candidate=pg-b", "-e", "wait_timeout=[1, 2]"), 2, ("wait_timeout",)),
    "unknown parameter, with a hint": Case(SW, ("-e", "candidat=pg-b"), 2, ("candidat", "candidate")),
    "fence_method not a choice": Case(FO, ("-e", "fence_method=kill"), 2, ("fence_method", "stop")),
    "bool that is not one": Case(FO, ("-e", "force=maybe"), 2, ("force",)),
    "int for a bool": Case(FO, ("-e", "primary_confirmed_down=2"), 2, ("primary_confirmed_down",)),
    "negative failover lag budget": Case(FO, ("-e", "max_lag_bytes=-1", "-e", "force=true"), 2, ("max_lag_bytes",)),
    "zero rejoin wait": Case(RJ, ("-e", "wait_timeout=0"), 2, ("wait_timeout",)),
    "rejoin bool as a sentence": Case(RJ, ("-e", "allow_stop_primary=yes please"), 2, ("allow_stop_primary",)),
    "extra vars file that is a list": Case(SW, ("-e", "@{list_file}"), 2, ("mapping",)),
    "extra vars file that does not exist": Case(SW, ("-e", "@/nonexistent/vars.yml"), 2, ("/nonexistent/vars.yml",)),
    "limit that skips the controller": Case(SW, ("-e", "candidate=pg-b", "--limit", "pg-b"), 2, ("limit",)),
    "unknown runbook": Case("database_nope", (), 2, ("database_nope",)),
    "inventory that does not exist": Case(SW, ("-e", "candidate=pg-b", "-i", "/nonexistent/inventory"), 2,
                                          ("/nonexistent/inventory",)),
    # ---- hostile or odd strings: data, never code; refused by the runbook's own checks (exit 1)
    "unknown host as candidate": Case(SW, ("-e", "candidate=pg-z"), 1, ("pg-z", "not one of the nodes")),
    "template lookup as candidate": Case(SW, ("-e", "candidate={{ lookup('pipe', 'touch " + str(MARKER) + "') }}"),
                                         1, ("not one of the nodes",)),
    "template reading a secret": Case(SW, ("-e", "candidate=" + SECRET_VAR), 1, ("not one of the nodes",)),
    "jinja statement as candidate": Case(SW, ("-e", "candidate={% for x in range(99999999) %}x{% endfor %}"), 1,
                                         ("not one of the nodes",)),
    "shell metacharacters": Case(SW, ("-e", "candidate=pg-b; touch " + str(MARKER)), 1, ("not one of the nodes",)),
    "command substitution": Case(SW, ("-e", "candidate=$(touch " + str(MARKER) + ")"), 1, ("not one of the nodes",)),
    "backticks": Case(SW, ("-e", "candidate=`touch " + str(MARKER) + "`"), 1, ("not one of the nodes",)),
    "unicode lookalike": Case(SW, ("-e", "candidate=pg-\u0431"), 1, ("not one of the nodes",)),
    "100 kB string": Case(SW, ("-e", "candidate=" + "x" * 100_000), 1, ("not one of the nodes",)),
    "empty candidate": Case(SW, ("-e", "candidate="), 1, ("candidate",)),
    "failover away from an unknown node": Case(FO, ("-e", "away_from=pg-z"), 1, ("pg-z", "not one of the nodes")),
    "failover to the node it leaves": Case(FO, ("-e", "candidate=pg-a"), 1, ("pg-a", "away from")),
    "failover without a fence beside a live primary": Case(
        FO, ("-e", "fence_method=none", "-e", "primary_confirmed_down=true"), 1, ("two writable primaries",)),
    "force never overrides the fence": Case(
        FO, ("-e", "fence_method=none", "-e", "force=true", "-e", "primary_confirmed_down=true"), 1,
        ("force does not override",)),
    "rejoin the primary itself": Case(RJ, ("-e", "node=pg-a"), 1, ("pg-a is the primary",)),
    "rejoin an unknown node": Case(RJ, ("-e", "node=pg-z"), 1, ("pg-z", "not one of the nodes")),
    # ---- credentials and inventories (exit 1, before any change)
    "wrong password": Case(SW, ("-e", "candidate=pg-b", "-e", "pg_login_password=Wrong-Password-42"), 1,
                           ("erlmcp_dr", "password")),
    "wrong port of a standby": Case(SW, ("-e", "candidate=pg-b"), 1, ("pg-b", "connection refused"),
                                    inventory=_copy("wrong-port", _port(1))),
    "port that is not a number": Case(SW, ("-e", "candidate=pg-b"), 1, ("pg_port", "pg-b", "int"),
                                      inventory=_copy("port-abc", _port("abc"))),
    "no postgres group": Case(SW, ("-e", "candidate=pg-b"), 1, ("postgres", "group"),
                              inventory=_copy("no-group", _without_group)),
    "empty postgres group": Case(SW, ("-e", "candidate=pg-b"), 1, ("postgres",),
                                 inventory=_copy("empty-group", _empty_group)),
    "no login user": Case(SW, ("-e", "candidate=pg-b"), 1, ("pg_login_user",),
                          inventory=_copy("no-login-user", _no_login_user)),
    "unparsable inventory": Case(SW, ("-e", "candidate=pg-b"), 1, ("postgres",),
                                 inventory=_raw("broken", "all: [this is: not: an inventory\n")),
    "empty inventory file": Case(SW, ("-e", "candidate=pg-b"), 1, ("postgres",), inventory=_raw("empty", "")),
}


@pytest.fixture(scope="module")
def shared_lab():
    with new_lab() as cfg:
        yield cfg


@pytest.fixture
def untouched(shared_lab):
    cfg = shared_lab
    before = topology(cfg)
    assert before == {name: dict(before[name], **want) for name, want in FRESH.items()}, lab.format_status(
        lab.status(cfg))
    app = cfg.app_config_path.read_bytes() if cfg.app_config_path.exists() else None
    MARKER.unlink(missing_ok=True)
    yield cfg
    assert topology(cfg) == before
    assert (cfg.app_config_path.read_bytes() if cfg.app_config_path.exists() else None) == app
    assert not MARKER.exists(), "a parameter was executed"


def what_the_operator_reads(cli: Cli) -> str:
    text = cli.stderr
    if cli.stdout.strip().startswith("{"):
        result = cli.json
        text += " " + failure_message(result) + " " + str((result.get("facts") or {}).get("summary") or "")
    return text


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_a_clear_error_and_changes_nothing(untouched, home, tmp_path, name):
    cfg = untouched
    case = CASES[name]
    list_file = tmp_path / "list.yml"
    list_file.write_text("- candidate: pg-b\n")
    args = [arg.replace("{list_file}", str(list_file)) for arg in case.args]
    inventory = case.inventory(cfg) if case.inventory else inventory_path(cfg)
    if "-i" not in args:
        args = ["-i", str(inventory), *args]

    cli = runbook_cli("run", case.runbook, *args, "--yes", "--json")

    assert cli.rc == case.rc, f"{name}: {cli}"
    text = what_the_operator_reads(cli)
    missing = [word for word in case.words if word not in text]
    assert not missing, f"{name}: {missing} not in what the operator reads:\n{text[-3000:]}"
    assert "Traceback" not in cli.stderr and "MODULE FAILURE" not in text, text[-3000:]
    assert lab.LAB_PASSWORD not in cli.stdout + cli.stderr  # the inventory's secret never printed
    if cli.rc == 1:
        result = cli.json
        assert [s["task"] for s in result["steps"] if s["changed"] and "lock" not in s["task"].lower()] == []


def test_the_table_has_forty_cases_or_more():
    assert len(CASES) >= 40

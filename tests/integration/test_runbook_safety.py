"""What the runbooks must never do: change anything in a plan, on bad input, under a held lock,
or leak a secret into a run folder.

Most tests here share one lab (module scope): each of them must leave it exactly as it found
it, and checks so (roles, timelines, upstreams and postmaster pids from lab.status).
"""

from __future__ import annotations

import json
import secrets
import tempfile
from pathlib import Path
from typing import Any

import pytest
from conftest import lab_inventory
from runbook_helpers import (
    DEADLINE,
    FRESH,
    as_int,
    changed_steps,
    closed_port,
    failure_message,
    files_containing,
    host_vars,
    inventory_copy,
    inventory_path,
    lock_held,
    lsns,
    new_lab,
    node_state,
    pg,
    primary_on,
    run_folders,
    run_json,
    runbook_cli,
    step,
    streaming_from,
    summary,
    takes_no_writes,
    topology,
    wait_for,
    wait_quiet,
    wait_topology,
    wal_records_between,
    write_row,
)

import erlmcp_dr
from erlmcp_dr.errors import ParameterError, RunBusy, UnknownRunbook
from erlmcp_dr.lab import lifecycle as lab

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def shared_lab():
    with new_lab() as cfg:
        yield cfg




@pytest.fixture
def untouched(shared_lab):
    """The shared lab as the test found it (fresh: pg-a primary, pg-b and pg-c streaming from it),
    checked again after the test: nothing may have changed, nothing restarted."""
    cfg = shared_lab
    before = topology(cfg)
    assert before == {name: dict(before[name], **want) for name, want in FRESH.items()}, lab.format_status(
        lab.status(cfg))
    app = app_files(cfg)
    yield cfg
    assert topology(cfg) == before
    assert app_files(cfg) == app
    write_row(cfg, "pg-a", "pg-a still takes writes")


def app_files(cfg: lab.LabConfig) -> dict[str, bytes]:
    folder = cfg.app_config_path.parent
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else {}


def assessed(result: dict[str, Any], node: str) -> dict[str, Any]:
    return step(result, "Read every database node's live role")["data"]["nodes"][node]


# ---------------------------------------------------------------- check mode


def test_plans_change_nothing_not_even_an_lsn(fresh_lab, home):
    """Check mode on a lab of its own (nothing else may write to its WAL meanwhile)."""
    cfg = fresh_lab
    inventory = str(inventory_path(cfg))
    assert not cfg.app_config_path.exists()
    before = wait_quiet(cfg)  # the idle primary's own WAL has been written: from here on LSNs stand still

    _, failover = run_json("plan", "database_failover", "-i", inventory, expect_rc=0)
    # A config to keep unchanged (there was none for the first plan to create).
    cfg.app_config_path.write_text('{"database": {"primary": "127.0.0.1:1"}}\n')
    app_before = app_files(cfg)
    _, switchover = run_json("plan", "database_switchover", "-i", inventory, "-e", "candidate=pg-c", expect_rc=0)

    after = lab.status(cfg)
    assert failover["check"] is True and switchover["check"] is True
    assert summary(failover)["action"] == "promote" and summary(failover)["new_primary"] == "pg-b", failover["facts"]
    assert summary(switchover)["action"] == "promote" and summary(switchover)["new_primary"] == "pg-c"
    # What a real run would change is reported as such (check mode), and nothing was.
    assert step(failover, "Fence the old primary")["changed"] is True
    assert step(switchover, "Fence the old primary")["changed"] is True
    assert topology(cfg, after) == topology(cfg, before)
    assert lsns(after) == lsns(before), wal_records_between(cfg, "pg-a", lsns(before)["pg-a"], lsns(after)["pg-a"])
    assert app_files(cfg) == app_before
    assert set(app_before) == {cfg.app_config_path.name}  # the first plan did not create a config either


# ---------------------------------------------------------------- unreachable candidates


def test_unknown_host_is_reported_unreachable_and_refused_as_candidate(untouched, home):
    cfg = untouched
    inventory = str(inventory_copy(cfg, "unknown-host", lambda d: host_vars(d, "pg-c").update(
        pg_host="no-such-host.invalid")))

    _, result = run_json("run", "database_failover", "-i", inventory, "-e", "candidate=pg-c", "--yes", expect_rc=1)

    pg_c = assessed(result, "pg-c")
    assert pg_c["reachable"] is False and "no-such-host.invalid" in pg_c["error"], pg_c
    message = failure_message(result)
    assert "pg-c" in message and "unreachable" in message and "no-such-host.invalid" in message, message
    assert changed_steps(result) == []


def test_closed_port_is_reported_unreachable_and_refused_as_candidate(untouched, home):
    cfg = untouched
    port = closed_port()
    inventory = str(inventory_copy(cfg, "closed-port", lambda d: host_vars(d, "pg-c").update(pg_port=port)))

    _, result = run_json("run", "database_failover", "-i", inventory, "-e", "candidate=pg-c", "--yes", expect_rc=1)

    pg_c = assessed(result, "pg-c")
    assert pg_c["reachable"] is False and str(port) in pg_c["error"], pg_c
    message = failure_message(result)
    assert "pg-c" in message and "unreachable" in message and f"127.0.0.1:{port}" in message, message
    assert changed_steps(result) == []


def test_wrong_password_fails_saying_so(untouched, home):
    cfg = untouched
    wrong = "Not-The-Lab-Password-7"

    cli, result = run_json("run", "database_failover", "-i", str(inventory_path(cfg)),
                           "-e", f"pg_login_password={wrong}", "--yes", expect_rc=1)

    message = failure_message(result)
    assert "authentication failed for user erlmcp_dr" in message and "wrong or missing password" in message, message
    assert changed_steps(result) == []
    assert wrong not in cli.stdout + cli.stderr
    assert files_containing(Path(result["run_dir"]), wrong.encode()) == []


# ---------------------------------------------------------------- promoting the primary


def test_failover_refuses_to_promote_the_node_it_fails_over_away_from(untouched, home):
    cfg = untouched

    _, result = run_json("run", "database_failover", "-i", str(inventory_path(cfg)), "-e", "candidate=pg-a",
                         "--yes", expect_rc=1)

    message = failure_message(result)
    assert "pg-a" in message and "away from" in message, message
    assert changed_steps(result) == []


def test_switchover_to_the_current_primary_only_writes_a_missing_app_config(fresh_lab, home):
    """The end state includes the application's config: the first run writes the missing file and
    nothing else, the second changes nothing at all."""
    cfg = fresh_lab
    topo = topology(cfg)
    args = ("run", "database_switchover", "-i", str(inventory_path(cfg)), "-e", "candidate=pg-a", "--yes")

    _, first = run_json(*args, expect_rc=0)
    _, second = run_json(*args, expect_rc=0)

    assert summary(first)["action"] == "none" and "already is the primary" in summary(first)["reason"]
    assert changed_steps(first) == ["Point the application at the primary and its streaming replicas; verify the "
                                    "candidate is the only writable primary and every other member streams from it "
                                    "(localhost)"]
    assert json.loads(cfg.app_config_path.read_text())["database"]["primary_node"] == "pg-a"
    assert changed_steps(second) == [] and summary(second)["did"] == ["nothing was changed"]
    assert topology(cfg) == topo


# ---------------------------------------------------------------- usage errors: exit 2, nothing runs


USAGE_ERRORS = {
    "unknown parameter": (["run", "database_failover", "-e", "bogus=1"], ["bogus"]),
    "unknown runbook": (["run", "database_nope"], ["unknown runbook", "database_nope"]),
    "missing required parameter": (["run", "database_switchover"], ["candidate", "missing"]),
    "bad value type": (["run", "database_failover", "-e", "max_lag_bytes=lots"], ["max_lag_bytes"]),
    "unknown parameter in a plan": (["plan", "database_rejoin", "-e", "nodes=pg-a"], ["nodes", "node"]),
}


@pytest.mark.parametrize("case", list(USAGE_ERRORS))
def test_usage_errors_exit_2_naming_the_problem_and_run_nothing(untouched, home, case):
    cfg = untouched
    args, words = USAGE_ERRORS[case]
    extra = ["--yes"] if args[0] == "run" else []

    cli = runbook_cli(*args, "-i", str(inventory_path(cfg)), *extra, "--json")

    assert cli.rc == 2, cli
    assert all(word in cli.stderr for word in words), cli.stderr
    assert cli.stdout == ""
    assert not (home / "runs").exists() or run_folders() == []


def test_api_raises_before_anything_runs(untouched, home):
    inventory = inventory_path(untouched)
    with pytest.raises(ParameterError) as bogus:
        erlmcp_dr.run("database_failover", inventory=inventory, extravars={"bogus": 1})
    assert bogus.value.parameter == "bogus"
    with pytest.raises(ParameterError) as lots:
        erlmcp_dr.run("database_failover", inventory=inventory, extravars={"max_lag_bytes": "lots"})
    assert lots.value.parameter == "max_lag_bytes"
    with pytest.raises(ParameterError) as missing:
        erlmcp_dr.run("database_switchover", inventory=inventory)
    assert missing.value.parameter == "candidate"
    with pytest.raises(UnknownRunbook):
        erlmcp_dr.run("database_nope", inventory=inventory)
    assert run_folders() == []


# ---------------------------------------------------------------- one run per inventory


def test_a_second_run_on_a_locked_cluster_exits_3_and_runs_nothing(fresh_lab, home, tmp_path):
    """Another run holds the cluster's run lock (a live ansible-playbook holding it until told to go on):
    a CLI run and an API run on the same cluster are turned away naming it, and change nothing."""
    cfg = fresh_lab
    inventory = str(inventory_path(cfg))
    holder = "it-lock-holder-" + secrets.token_hex(3)
    sysid = node_state(cfg, "pg-a")["system_identifier"]
    with lock_held(cfg, f"postgres:{sysid}", holder, tmp_path):
        topo = topology(cfg)

        cli = runbook_cli("run", "database_failover", "-i", inventory, "--yes", "--json")
        with pytest.raises(RunBusy) as busy:
            erlmcp_dr.run("database_switchover", inventory=inventory, extravars={"candidate": "pg-c"})

    assert cli.rc == 3, cli
    assert holder in cli.stderr, cli.stderr
    assert busy.value.run_id == holder, busy.value
    assert topology(cfg) == topo


# ---------------------------------------------------------------- secrets


def test_a_password_given_as_parameter_never_reaches_the_run_folder_nor_the_output(fresh_lab, home):
    """The login password exists only as a -e parameter (the inventory has none): the failover
    works with it, and it appears in no file of the run folder, nor in the CLI's output."""
    cfg = fresh_lab
    secret = "Sx" + secrets.token_hex(11)  # 24 characters found nowhere else
    with pg.connect(cfg.node("pg-a").conn_params()) as conn:
        conn.execute(f"ALTER ROLE {lab.SUPERUSER} PASSWORD '{secret}'")
    for node in ("pg-b", "pg-c"):  # the new password replicates to the standbys
        wait_for(lambda node=node: _logs_in(cfg, node, secret), DEADLINE, what=f"{node} knows the new password")
    inventory = str(inventory_copy(cfg, "no-password", lambda d: d["all"]["vars"].pop("pg_login_password")))
    assert secret not in Path(inventory).read_text() and lab.LAB_PASSWORD not in _login_vars(inventory)

    cli, result = run_json("run", "database_failover", "-i", inventory, "-e", f"pg_login_password={secret}",
                           "--yes", expect_rc=0)

    assert summary(result)["action"] == "promote" and summary(result)["new_primary"] == "pg-b", failure_message(result)
    assert node_state(cfg, "pg-b", password=secret)["role"] == "primary"
    run_dir = Path(result["run_dir"])
    assert (run_dir / "artifacts").is_dir() and (run_dir / "report.md").is_file()
    assert result["extravars"]["pg_login_password"] == "********"
    assert secret not in cli.stdout and secret not in cli.stderr
    assert files_containing(home, secret.encode()) == []  # the run folder, its artifacts, the lock files
    # No task printed it either (the runner warns when it had to scrub a no_log value after the fact).
    assert "no_log parameter" not in cli.stderr, cli.stderr
    # ansible-runner's private folder (extra vars, with the secret) is gone.
    assert list(Path(tempfile.gettempdir()).glob(f"erlmcp-dr-{result['run_id']}-*")) == []


def _logs_in(cfg: lab.LabConfig, node: str, password: str) -> bool:
    conn, _ = pg.try_connect(dict(cfg.node(node).conn_params(), password=password))
    if conn is None:
        return False
    conn.close()
    return True


def _login_vars(inventory: str) -> str:
    import yaml

    data = yaml.safe_load(Path(inventory).read_text())["all"]["vars"]
    return json.dumps({key: value for key, value in data.items() if key.startswith("pg_login")})


def test_the_helpers_use_the_labs_own_inventory():
    cfg = lab.LabConfig(root=Path("/nonexistent/lab"))
    assert inventory_path(cfg) == lab_inventory(cfg)


# ---------------------------------------------------------------- what a run says is what it did (row 4)


def test_a_fence_that_fails_says_so_and_who_takes_writes_now(fresh_lab, home):
    """pg_ctl cannot be found on the old primary's host: the fence fails before stopping anything,
    the rescue's attempt to start it fails the same way, and the message says exactly that and that
    pg-a still takes writes (it never says "nothing was changed" by assumption)."""
    cfg = fresh_lab
    topo = topology(cfg)
    inventory = str(inventory_copy(cfg, "no-pg-ctl", lambda d: host_vars(d, "pg-a").update(pg_bin_dir="/nonexistent")))

    _, result = run_json("run", "database_switchover", "-i", inventory, "-e", "candidate=pg-b", "--yes", expect_rc=1)

    message = failure_message(result)
    assert "fencing pg-a failed: pg_ctl not found in /nonexistent" in message, message
    assert "now pg-a takes writes, as before" in message, message
    assert topology(cfg) == topo
    write_row(cfg, "pg-a", "pg-a still takes writes")


# ---------------------------------------------------------------- a read-only fence, end to end (row 6)


def test_failover_with_a_read_only_fence_succeeds_reruns_clean_and_rejoin_converts_it(fresh_lab, home):
    cfg = fresh_lab
    inventory = str(inventory_path(cfg))
    args = ("run", "database_failover", "-i", inventory, "-e", "fence_method=read_only", "--yes")

    _, first = run_json(*args, expect_rc=0)
    _, again = run_json(*args, expect_rc=0)

    assert summary(first)["action"] == "promote" and summary(first)["end_state"]["ok"] is True, failure_message(first)
    assert takes_no_writes(cfg, "pg-a").startswith("write rejected")  # fenced: up, but read-only
    assert summary(again)["action"] == "none" and changed_steps(again) == [], summary(again)
    new = summary(first)["new_primary"]
    _, rejoin = run_json("run", "database_rejoin", "-i", inventory, "--yes", expect_rc=0)
    assert "pg-a" in summary(rejoin)["streaming"], summary(rejoin)
    wait_topology(cfg, {"pg-a": {"role": "standby", "upstream": new}}, "pg-a converted to a standby")


# ---------------------------------------------------------------- silent facts made loud (row 12)


def test_a_switchover_warns_about_the_member_it_leaves_out(fresh_lab, home):
    cfg = fresh_lab
    lab.down(cfg)  # every node stops; start all but pg-c again
    for name in ("pg-a", "pg-b"):
        cfg.node(name).server().start(timeout=DEADLINE)
    wait_topology(cfg, {"pg-a": {"role": "primary"}, "pg-b": {"role": "standby", "upstream": "pg-a"}},
                  "pg-a and pg-b up")

    _, result = run_json("run", "database_switchover", "-i", str(inventory_path(cfg)), "-e", "candidate=pg-b",
                         "--yes", expect_rc=0)

    facts = summary(result)
    assert [item["node"] for item in facts["left_out"]] == ["pg-c"], facts
    assert any(w.startswith("pg-c is left out") for w in facts["warnings"]), facts
    assert topology(cfg)["pg-c"]["state"] == "stopped"  # never started behind the operator's back


def test_a_member_of_another_cluster_is_refused_before_anything_is_fenced(fresh_lab, home):
    cfg = fresh_lab
    topo = topology(cfg)
    with new_lab(own_system_identifier=True) as other:
        stranger = other.node("pg-b").port
        inventory = str(inventory_copy(cfg, "stranger", lambda d: host_vars(d, "pg-c").update(pg_port=stranger)))

        _, result = run_json("run", "database_failover", "-i", inventory, "--yes", expect_rc=1)

    message = failure_message(result)
    assert "pg-c (system identifier" in message and "another cluster" in message, message
    assert changed_steps(result) == []
    assert topology(cfg) == topo


def test_timelines_in_the_summary_are_the_real_ones_after_two_switchovers(fresh_lab, home):
    cfg = fresh_lab
    inventory = str(inventory_path(cfg))
    run_json("run", "database_switchover", "-i", inventory, "-e", "candidate=pg-b", "--yes", expect_rc=0)
    wait_topology(cfg, {"pg-c": streaming_from("pg-b", 2)}, "pg-c on timeline 2")

    _, result = run_json("run", "database_switchover", "-i", inventory, "-e", "candidate=pg-c", "--yes", expect_rc=0)

    facts = summary(result)
    assert as_int(facts["timeline_before"]) == 2 and as_int(facts["timeline_after"]) == 3, facts
    assert "promoted pg-c: timeline 2 -> 3" in facts["did"], facts


# ---------------------------------------------------------------- a failure after the promotion (row 5)


def test_a_standby_that_cannot_follow_fails_the_run_but_the_app_already_follows_the_new_primary(fresh_lab, home):
    """The replication password is wrong: the promotion succeeds, repointing pg-c cannot. The app
    config names the new primary anyway (it must not keep pointing at the fenced one), the run
    fails naming what is missing, and a run with the right inventory finishes the job."""
    cfg = fresh_lab
    wrong = str(inventory_copy(cfg, "wrong-replication-password",
                               lambda d: d["all"]["vars"].update(pg_replication_password="Not-It-99")))

    _, failed = run_json("run", "database_failover", "-i", wrong, "-e", "candidate=pg-b", "--yes", expect_rc=1)

    message = failure_message(failed)
    assert "The end state does not hold" in message and "pg-c" in message and "replication" in message, message
    assert "Not-It-99" not in json.dumps(failed)
    app = json.loads(cfg.app_config_path.read_text())["database"]
    assert app["primary_node"] == "pg-b", app

    _, fixed = run_json("run", "database_failover", "-i", str(inventory_path(cfg)), "-e", "candidate=pg-b", "--yes",
                        expect_rc=0)

    assert summary(fixed)["action"] == "converge" and summary(fixed)["streaming"] == ["pg-c"], summary(fixed)
    wait_topology(cfg, {"pg-b": primary_on(2), "pg-c": streaming_from("pg-b", 2)}, "pg-c follows pg-b")

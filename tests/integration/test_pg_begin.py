"""The role erlmcp.dr.pg_begin (one erlmcp.dr.pg_begin task) through real ansible-playbook runs on the lab: what it
sets, in one task; parameters refused before anything is read or locked; a bad inventory; a lock held by another
run; check mode. The playbook is written per test; the lab's inventory keeps locks in <lab root>/locks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from runbook_helpers import host_vars, inventory_copy, inventory_path, lock_held

from erlmcp_dr import paths
from erlmcp_dr.lab import lifecycle as lab

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._lock import store as _lock  # noqa: E402

pytestmark = pytest.mark.integration

RUNBOOK = {"title": "pg_begin test", "parameters": {
    "candidate": {"type": "str", "required": True},
    "max_lag_bytes": {"type": "int", "default": 16777216, "min": 0},
    "token": {"type": "str", "no_log": True},
}}
BEGIN = "Read every database node's live role"


def playbook(tmp: Path, out: Path, *, include: bool = False) -> Path:
    """A runbook's shape: the start (imported or included), a task that registers over pg_assess_result, the facts
    written to `out`, and the lock released in `always` unless pg_begin_lock failed (as the runbooks do)."""
    start: dict[str, Any] = {"name": "Start", "vars": {"pg_begin_runbook": "test_begin", "pg_begin_plan": "switchover"}}
    start["ansible.builtin.include_role" if include else "ansible.builtin.import_role"] = {
        "name": "erlmcp.dr.pg_begin", "rolespec_validate": False}
    if include:  # the role's variables name its facts (facts are not variables once INJECT_FACTS_AS_VARS is off)
        start["ansible.builtin.include_role"]["public"] = True
    keep = {"dr": "{{ dr }}", "lock": "{{ pg_begin_lock }}", "plan": "{{ dr_plan }}",
            "assess": "{{ pg_assess_result }}"}
    play = {"name": "Begin", "hosts": "localhost", "gather_facts": False, "vars": {"runbook": RUNBOOK}, "tasks": [{
        "name": "Work under the lock", "block": [
            start,
            {"name": "Keep what the start set", "ansible.builtin.set_fact": {"kept": keep}},
            {"name": "Read pg-a alone, registered under the start's name", "erlmcp.dr.pg_replication_info": {
                "nodes": "{{ groups['postgres'] | erlmcp.dr.pg_nodes(hostvars) | selectattr('name', 'eq', 'pg-a') }}",
                "login_user": "{{ pg_login_user }}", "login_password": "{{ pg_login_password | default(omit) }}"},
             "register": "pg_assess_result"},
            {"name": "Write it out", "ansible.builtin.copy": {
                "content": "{{ kept | combine({'later': pg_assess_result.nodes.keys() | list}) | to_json }}",
                "dest": str(out), "mode": "0600"}, "check_mode": False},
        ], "always": [{
            "name": "Release the cluster's run lock", "erlmcp.dr.run_lock": {
                "key": "{{ pg_begin_lock.key }}", "state": "absent", "store_dir": "{{ dr_lock_dir | default(omit) }}"},
            "when": "pg_begin_lock is defined and pg_begin_lock is not failed"}],
    }]}
    path = tmp / ("include.yml" if include else "import.yml")
    path.write_text(yaml.safe_dump([play], sort_keys=False))
    return path


def run(inventory: Path, book: Path, *extra: str) -> tuple[int, str]:
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_DEPRECATION_WARNINGS="0",
               ANSIBLE_COLLECTIONS_PATH=str(paths.collections_path()))
    proc = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory), str(book),
                           *extra], capture_output=True, text=True, env=env, timeout=300, check=False)
    return proc.returncode, " ".join((proc.stdout + proc.stderr).split())


def tasks_run(output: str) -> list[str]:
    """The names of the tasks run, in order, without their role's prefix."""
    return [part.split("]", 1)[0].split(" : ", 1)[-1] for part in output.split("TASK [")[1:]]


def lock_decision(cfg: lab.LabConfig, key: str) -> str:
    """What a new run would meet at the lab's lock for key (take, busy, ...)."""
    return _lock.DirectoryStore(str(cfg.root / "locks")).inspect(key, "someone-else")["decision"]


@pytest.mark.parametrize("include", [False, True], ids=["import_role", "include_role"])
def test_one_task_sets_the_parameters_the_locked_read_the_lock_and_the_plan(untouched, tmp_path, include):
    cfg = untouched
    out = tmp_path / "facts.json"

    rc, output = run(inventory_path(cfg), playbook(tmp_path, out, include=include),
                     "-e", "candidate=pg-b", "-e", "token=s3cret-token")

    assert rc == 0, output
    facts = json.loads(out.read_text())
    started = [name for name in tasks_run(output) if name.startswith(BEGIN)]
    assert len(started) == 1 and "Lock the cluster" in started[0], tasks_run(output)
    assert facts["dr"] == {"candidate": "pg-b", "max_lag_bytes": 16777216}  # the secret is left out
    sysid = facts["assess"]["system_identifier"]
    assert facts["lock"]["key"] == f"postgres:{sysid}" and facts["lock"]["held"] and facts["lock"]["acquired"]
    assert facts["lock"]["holder"]["runbook"] == "test_begin"
    assert sorted(facts["assess"]["nodes"]) == ["pg-a", "pg-b", "pg-c"] and facts["assess"]["primary"] == "pg-a"
    assert facts["plan"]["action"] == "promote" and facts["plan"]["candidate"] == "pg-b"
    assert facts["plan"]["fence"] == "pg-a"
    assert facts["later"] == ["pg-a"]  # a later `register: pg_assess_result` outranks the start's fact
    assert lock_decision(cfg, facts["lock"]["key"]) == _lock.TAKE  # released by the always section
    assert "s3cret-token" not in output


def test_a_template_in_a_parameter_is_refused_before_anything_is_read_or_locked(untouched, tmp_path):
    cfg = untouched
    marker = tmp_path / "templated"
    out = tmp_path / "facts.json"

    rc, output = run(inventory_path(cfg), playbook(tmp_path, out),
                     "-e", "candidate={{ lookup('ansible.builtin.pipe', 'touch " + str(marker) + "') }}")

    assert rc == 2, output
    assert "parameter 'candidate' contains template markers ({{ ... }})" in output, output
    assert "runbook parameters are data and are never templated" in output
    assert not marker.exists() and not out.exists()
    assert "nodes" not in output.split("fatal:", 1)[1]  # failed before the read
    assert not (cfg.root / "locks").exists() or not list((cfg.root / "locks").glob("*" + _lock.RECORD_SUFFIX))


def test_an_inventory_without_a_port_is_refused_before_anything_is_read(untouched, tmp_path):
    cfg = untouched
    inventory = inventory_copy(cfg, "begin-no-port", lambda data: host_vars(data, "pg-c").pop("pg_port"))

    rc, output = run(inventory, playbook(tmp_path, tmp_path / "facts.json"), "-e", "candidate=pg-b")

    assert rc == 2, output
    assert "host pg-c (group postgres): pg_port is not defined, expected type int" in output, output
    assert "inventory" in output.split("fatal:", 1)[1]
    assert "system_identifier" not in output.split("fatal:", 1)[1]  # failed before the read


def test_a_lock_held_by_another_run_is_refused_and_left_to_its_holder(untouched, tmp_path):
    cfg = untouched
    out = tmp_path / "facts.json"
    book = playbook(tmp_path, out)
    rc, output = run(inventory_path(cfg), book, "-e", "candidate=pg-b", "--check")  # the key, taking nothing
    key = json.loads(out.read_text())["lock"]["key"]
    assert rc == 0 and key.startswith("postgres:"), output

    with lock_held(cfg, key, "the-other-run", tmp_path):
        rc, output = run(inventory_path(cfg), book, "-e", "candidate=pg-b")
        still = lock_decision(cfg, key)

    assert rc == 2, output
    begun, released = tasks_run(output)[-2:]  # the start fails itself: no task of its own refuses
    assert begun.startswith(BEGIN) and released == "Release the cluster's run lock", tasks_run(output)
    refusal = output.rsplit("TASK [", 2)[-2]  # what the start printed
    assert "fatal:" in refusal and "busy: true" in refusal and "the-other-run" in refusal, refusal
    assert f"Another run holds the run lock for {key}" in refusal
    assert "skipping" in output.split("TASK [Release the cluster's run lock]", 1)[1]  # not someone else's lock
    assert still == _lock.BUSY  # the holder kept it until it ended


def test_check_mode_reads_and_plans_but_takes_no_lock(untouched, tmp_path):
    cfg = untouched
    out = tmp_path / "facts.json"

    rc, output = run(inventory_path(cfg), playbook(tmp_path, out), "-e", "candidate=pg-c", "--check")

    assert rc == 0, output
    facts = json.loads(out.read_text())
    assert facts["lock"]["held"] is False and facts["lock"]["would_take"] is True, facts["lock"]
    assert facts["plan"]["action"] == "promote" and facts["plan"]["candidate"] == "pg-c"
    assert lock_decision(cfg, facts["lock"]["key"]) == _lock.TAKE

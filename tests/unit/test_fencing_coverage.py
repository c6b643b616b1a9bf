"""Issue 22, Part 1: every state-changing step of a runbook runs the run lock's fencing check right before it acts,
read from the playbooks, roles and action plugins themselves (a new step added without it fails here):

- a collection module with an action plugin checks in the plugin (_module.run_on_controller, or fencing_check itself
  on a path that bypasses it: pg_promote's armed fence-and-promote);
- a collection module shipped without one (the Redis modules today) is preceded by erlmcp.dr.lock_fence, run
  whenever the run's lock is in etcd;
- no runbook changes a host through an ansible.builtin module (a service stop, a file write) that no check guards."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._lock import etcd as _lock_etcd  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._lock import store as _lock  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "erlmcp.dr."
# The collection's modules that change a target (the others read, or are the lock and parameter plumbing).
CHANGING_MODULES = ("pg_promote", "pg_fence", "pg_standby_follow", "app_db_config", "dns_record", "pg_backup",
                    "pg_restore", "pg_restore_in_place", "redis_backup", "redis_restore", "redis_promote",
                    "app_redis_config")
# ansible.builtin modules that change a host: none may appear in a runbook or role unguarded.
BUILTIN_CHANGING = {"service", "systemd", "systemd_service", "command", "shell", "raw", "script", "copy", "template",
                    "file", "lineinfile", "blockinfile", "replace", "package", "apt", "dnf", "yum", "user", "unarchive",
                    "get_url", "uri", "reboot"}
KEYWORDS = {"name", "when", "vars", "register", "loop", "loop_control", "tags", "delegate_to", "check_mode",
            "ignore_errors", "changed_when", "failed_when", "no_log", "notify", "environment", "become", "until",
            "retries", "delay", "run_once", "args", "module_defaults", "any_errors_fatal", "block", "rescue",
            "always", "listen", "delegate_facts", "timeout", "throttle"}


def action_of(task: dict[str, Any]) -> str | None:
    actions = [key for key in task if key not in KEYWORDS]
    return actions[0] if len(actions) == 1 else None


def task_lists(tasks: list[dict[str, Any]] | None) -> Iterator[list[dict[str, Any]]]:
    """Each list of sibling tasks, blocks' sections included: a check must precede its step in the same list."""
    tasks = tasks or []
    yield tasks
    for task in tasks:
        for section in ("block", "rescue", "always"):
            if section in task:
                yield from task_lists(task[section])


def every_task_list() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    for path in sorted((ROOT / "playbooks").glob("*.yml")):
        for play in yaml.safe_load(path.read_text()) or []:
            for section in ("pre_tasks", "tasks", "post_tasks", "handlers"):
                for tasks in task_lists(play.get(section)):
                    yield path.name, tasks
    for path in sorted((ROOT / "roles").glob("*/tasks/*.yml")):
        for tasks in task_lists(yaml.safe_load(path.read_text())):
            yield str(path.relative_to(ROOT)), tasks


def short(action: str | None) -> str:
    action = action or ""
    return action[len(PREFIX):] if action.startswith(PREFIX) else action


def methods_bypassing_run_on_controller(source: str) -> dict[str, str]:
    """The plugin's methods that act without run_on_controller (pg_promote's armed fence-and-promote), by name."""
    bodies = re.split(r"\n    def ", source)[1:]
    return {body.split("(", 1)[0]: body for body in bodies
            if "_execute_module(" in body and "run_on_controller(" not in body}


def test_every_changing_module_with_an_action_plugin_runs_the_fencing_check_there():
    unchecked = []
    for name in CHANGING_MODULES:
        plugin = ROOT / "plugins" / "action" / f"{name}.py"
        if not plugin.exists():
            continue
        source = plugin.read_text()
        if "run_on_controller(" not in source and "EngineAction" not in source:
            unchecked.append(f"{name}: neither run_on_controller nor EngineAction")
        for method, body in methods_bypassing_run_on_controller(source).items():
            if "fencing_check(" not in body:
                unchecked.append(f"{name}.{method}: acts without the fencing check")
    assert unchecked == []


def test_every_shipped_changing_module_is_preceded_by_the_fencing_step():
    shipped = {name for name in CHANGING_MODULES if not (ROOT / "plugins" / "action" / f"{name}.py").exists()}
    unguarded = []
    for where, tasks in every_task_list():
        for index, task in enumerate(tasks):
            name = short(action_of(task))
            if name not in shipped or task.get("check_mode") is True:  # a check-mode read-back changes nothing
                continue
            before = tasks[index - 1] if index else {}
            guarded = short(action_of(before)) == "lock_fence" and "'etcd'" in str(before.get("when", ""))
            if not guarded:
                unguarded.append(f"{where}: {task.get('name')}")
    assert shipped, "no shipped changing module left: remove lock_fence from the runbooks and this test"
    assert unguarded == []


def test_no_runbook_changes_a_host_through_an_unguarded_builtin_module():
    found = []
    for where, tasks in every_task_list():
        for task in tasks:
            action = action_of(task) or ""
            if action.startswith("ansible.builtin.") and action.split(".")[-1] in BUILTIN_CHANGING:
                found.append(f"{where}: {task.get('name')} ({action})")
    assert found == []


def test_the_fencing_check_names_the_tokens_a_step_ran_under(tmp_path, monkeypatch):
    """The tokens go into the step's result, so the audit trail's record of a change names its token."""
    monkeypatch.setenv("ERLMCP_DR_LOCK_DIR", str(tmp_path))
    assert _lock.fencing_check(os.getpid(), dict) == (None, {})
    _lock_etcd.record_held(os.getpid(), "redis:a,b,c", 57, 7587, (None, None), "run-1")
    variables = {"dr_lock_store": "etcd", "dr_lock_etcd_endpoints": ["127.0.0.1:9"], "dr_lock_etcd_timeout": 1}
    refusal, tokens = _lock.fencing_check(os.getpid(), lambda: variables)
    assert tokens == {"redis:a,b,c": 57}
    assert refusal and re.search(r"refused before changing anything: .*cannot be checked", refusal)


# redis_failover has no such step: redis_promote and app_redis_config run through run_on_controller (action plugins).
@pytest.mark.parametrize("playbook", ["redis_restore.yml", "redis_backup.yml"])
def test_the_fencing_step_runs_only_for_a_lock_in_etcd(playbook):
    """With the directory store (the default) the step is skipped: no worker forked before the change."""
    text = (ROOT / "playbooks" / playbook).read_text()
    assert text.count("erlmcp.dr.lock_fence:") >= 1
    assert text.count("erlmcp.dr.lock_fence:") == text.count("when: redis_begin_lock.store | default('') == 'etcd'")


# ---------------------------------------------------------------- the token where the change lands: the app config


def write(path: Path, config: dict[str, Any], token: int | None) -> dict[str, Any]:
    from ansible_collections.erlmcp.dr.plugins.module_utils._app import db_config as _app_config

    return _app_config.write_endpoint_file(str(path), "0640", config, False, False, "the application's config",
                                           "primary", fencing_token=token)


def test_the_app_config_names_the_lock_holder_that_wrote_it_and_the_token_alone_changes_nothing(tmp_path):
    path = tmp_path / "database.json"
    to_b = {"database": {"primary": "127.0.0.1:5002", "replicas": [], "primary_node": "pg-b", "replica_nodes": []}}
    first = write(path, to_b, 41)
    assert first["changed"] and json.loads(path.read_text())["database"]["fencing_token"] == 41
    again = write(path, to_b, 57)  # a later run over the same end state: no change, the writer's token stays
    assert not again["changed"] and json.loads(path.read_text())["database"]["fencing_token"] == 41
    to_c = {"database": dict(to_b["database"], primary="127.0.0.1:5003", primary_node="pg-c")}
    moved = write(path, to_c, 57)
    assert moved["changed"] and json.loads(path.read_text())["database"] == dict(to_c["database"], fencing_token=57)
    assert json.loads((tmp_path / "database.json.previous").read_text())["database"]["fencing_token"] == 41
    assert not write(path, to_c, None)["changed"]  # a run without an etcd lock over the same content: no change

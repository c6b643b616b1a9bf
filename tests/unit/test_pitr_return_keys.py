"""Each pgBackRest module's RETURN documents exactly the keys its engine returns (issue 21, round 11): the engine's
run() is driven through every successful path (check mode, a restore, a cut-off run finished, found done) with
the I/O at its edges replaced (pgBackRest, pg_ctl, the SQL session), so the result is the one its own code builds;
a key added to a result without documentation, or documented and never returned, fails here.

`changed` is Ansible's own key; failure-only keys (error_kind, missing_segment...) are documented "on that failure"
and are not produced by these successful paths, so they may be documented without being seen."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr import backup as backup_engine  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr import in_place, restore, verify  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.modules import (  # noqa: E402
    pg_backup,
    pg_restore,
    pg_restore_in_place,
    pg_restore_verify,
)

LABEL = "20261206-110000F"
BACKUP = {"label": LABEL, "type": "full", "prior": None, "database": {"id": 1},
          "lsn": {"start": "0/2000028", "stop": "0/2000100"},
          "archive": {"start": "000000010000000000000002", "stop": "000000010000000000000002"},
          "timestamp": {"start": 1765018800, "stop": 1765018810},
          "info": {"size": 23000000, "repository": {"size": 4500000}}}
WAL = {"archive_id": "15-1", "timeline": 1, "first": "000000010000000000000002",
       "last": "000000010000000000000003", "segments": 2, "missing": None}
PROOF = {"timeline": 2, "last_xact_time": "2026-12-06 11:39:59+00:00", "replay_lsn": "0/3000100", "port": 15999}
ANSIBLES_OWN = {"changed"}


class FakeDriver:
    """pgBackRest as the engines see it: one full backup, verified; nothing runs."""

    def describe(self) -> str:
        return "repo1 (posix /var/lib/pgbackrest)"

    def info(self) -> list[dict[str, Any]]:
        return [{"name": "main", "backup": [BACKUP], "archive": [{"id": "15-1", "database": {"id": 1}}]}]

    def check(self, timeout: int) -> None:
        return None

    def backup(self, kind: str) -> dict[str, Any]:
        return BACKUP

    def verify(self, label: str) -> dict[str, Any]:
        return {"ok": True, "status": "ok", "line": f"backup {label} ok"}

    def expire(self, keep_full: int) -> None:
        return None

    def restore(self, *args: Any, **kwargs: Any) -> None:
        return None


def documented(module: types.ModuleType) -> set[str]:
    return set(yaml.safe_load(module.RETURN))


def returned_keys(results: list[dict[str, Any]]) -> set[str]:
    return set().union(*(set(result) for result in results)) - ANSIBLES_OWN


def failure_only(module: types.ModuleType) -> set[str]:
    return {key for key, doc in yaml.safe_load(module.RETURN).items() if "failure" in str(doc.get("returned"))}


def assert_documented_exactly(module: types.ModuleType, results: list[dict[str, Any]]) -> None:
    keys, docs = returned_keys(results), documented(module)
    assert keys - docs == set(), f"returned by {module.__name__} but not in its RETURN"
    assert docs - failure_only(module) - keys == set(), f"in the RETURN of {module.__name__} but never returned"


def params_of(module: types.ModuleType, **values: Any) -> dict[str, Any]:
    params = {name: option.get("default") for name, option in module.argument_spec().items()}
    params.update(stanza="main", login_user="postgres", login_port=5432, **values)
    return params


@pytest.fixture()
def edges(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Replace what talks to pgBackRest, pg_ctl and the server; the engines' own result code runs."""
    monkeypatch.setattr(backup_engine, "driver_for", lambda params: FakeDriver())
    monkeypatch.setattr(restore, "driver_for", lambda params: FakeDriver())
    monkeypatch.setattr(in_place, "driver_for", lambda params: FakeDriver())
    monkeypatch.setattr(restore, "check_wal", lambda *args, **kwargs: dict(WAL))
    monkeypatch.setattr(restore, "_restore", lambda *args: None)
    monkeypatch.setattr(restore, "_start_and_prove", lambda *args: dict(PROOF))
    monkeypatch.setattr(restore, "Server", lambda *args, **kwargs: types.SimpleNamespace(stop=lambda **kw: None))
    monkeypatch.setattr(verify, "run_checks", lambda params, port, checks: [
        dict(name=c["name"], value=3, min=c["min"], ok=True, detail=f"3 >= {c['min']}") for c in checks])
    monkeypatch.setattr(verify, "data_dir_owner", lambda path: None)
    monkeypatch.setattr(verify, "write_atomic", lambda *args, **kwargs: None)
    monkeypatch.setattr(in_place, "_archive_current_segment", lambda node, params: "000000010000000000000003")
    monkeypatch.setattr(in_place, "_stop", lambda server, params: None)
    monkeypatch.setattr(in_place, "_own_config_files", lambda server, previous: {"postgresql.conf": "port = 5432\n"})
    monkeypatch.setattr(in_place, "_put_back_config", lambda server, own_files: None)
    monkeypatch.setattr(in_place, "_start", lambda server, params: None)
    monkeypatch.setattr(in_place, "_wait_promoted", lambda server, params, tli, facts: dict(PROOF))
    monkeypatch.setattr(in_place, "_tidy_recovery_settings", lambda server, own_files: None)

    def node_is(**node: Any) -> None:
        monkeypatch.setattr(in_place, "read_node", lambda server, params: dict(node))

    return node_is


def test_pg_restore_in_place_documents_exactly_the_keys_of_every_run_it_can_end(edges: Callable[..., None],
                                                                               tmp_path: Path) -> None:
    params = params_of(pg_restore_in_place, pg_data_dir=str(tmp_path / "main"), target_type="time",
                       target="2026-12-06T11:40:00+00:00")
    primary = dict(running=True, role="primary", timeline=1, current_lsn="0/9000000", read_only=False)
    edges(**primary)
    planned = in_place.run(params, check_mode=True)
    restored = in_place.run(params)
    edges(**dict(primary, timeline=2))
    done = in_place.run(params)
    # a run cut off after the node promoted: the next one only finishes it
    marker = in_place.read_marker(params["pg_data_dir"])
    in_place._write_marker(params["pg_data_dir"], dict(marker, state="restoring"))
    finished = in_place.run(params)
    assert [r["action"] for r in (planned, restored, done, finished)] == ["restore", "restore", "done", "finish"]
    assert_documented_exactly(pg_restore_in_place, [planned, restored, done, finished])


def test_pg_restore_documents_exactly_the_keys_of_every_run_it_can_end(edges: Callable[..., None],
                                                                      tmp_path: Path) -> None:
    results = []
    for after in ("running", "removed"):
        params = params_of(pg_restore, pg_data_dir=str(tmp_path / "main"), scratch_dir=str(tmp_path / after),
                           target_type="time", target="2026-12-06T11:40:00+00:00", after=after)
        results += [restore.run(params, check_mode=True), restore.run(params)]
    (tmp_path / "running").mkdir()  # the engine's own restore (replaced here) makes it
    results.append(restore.run(params_of(pg_restore, pg_data_dir=str(tmp_path / "main"), target_type="time",
                                         scratch_dir=str(tmp_path / "running"), target="2026-12-06T11:40:00+00:00")))
    assert results[-1].get("found_done")
    assert_documented_exactly(pg_restore, results)


def test_pg_restore_verify_documents_exactly_the_keys_of_every_run_it_can_end(edges: Callable[..., None],
                                                                             tmp_path: Path) -> None:
    params = params_of(pg_restore_verify, pg_data_dir=str(tmp_path / "main"), scratch_dir=str(tmp_path / "s"),
                       record=str(tmp_path / "main.verified.json"),
                       checks=[{"name": "rows", "query": "SELECT count(*) FROM t"}])
    results = [verify.run(params, check_mode=True), verify.run(params)]
    # a scratch left running by a former run, proven: check mode finds it done
    left = dict(params, after="running")
    verify.run(left)
    (tmp_path / "s").mkdir()
    results.append(verify.run(left, check_mode=True))
    assert results[-1].get("found_done")
    assert_documented_exactly(pg_restore_verify, results)


def test_pg_backup_documents_exactly_the_keys_of_every_run_it_can_end(edges: Callable[..., None]) -> None:
    results = []
    for retention in (None, 1):
        params = params_of(pg_backup, pg_data_dir="/var/lib/postgresql/15/main", retention_full=retention)
        results += [backup_engine.run(params, check_mode=True), backup_engine.run(params)]
    assert_documented_exactly(pg_backup, results)

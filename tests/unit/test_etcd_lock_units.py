"""The pure parts of the run lock's etcd store (module_utils/_lock/etcd.py) and of the store factory (_lock/store.py):
settings read from the inventory or the environment, the gateway's JSON, the fencing check's fast path."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._lock import etcd as _lock_etcd  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._lock import store as _lock  # noqa: E402

ENDPOINTS = ["http://127.0.0.1:2379", "http://127.0.0.1:2381", "http://127.0.0.1:2383"]


def test_the_directory_store_stays_the_default(tmp_path):
    settings = _lock.store_settings({}, environ={"ERLMCP_DR_LOCK_DIR": str(tmp_path)})
    assert settings == {"kind": "directory", "store_dir": str(tmp_path)}
    assert isinstance(_lock.make_store(settings), _lock.DirectoryStore)


def test_the_inventory_chooses_etcd_with_its_endpoints():
    settings = _lock.store_settings({"dr_lock_store": "etcd", "dr_lock_etcd_endpoints": ENDPOINTS,
                                     "dr_lock_etcd_ttl": "5"}, environ={})
    assert settings["kind"] == "etcd" and settings["endpoints"] == ENDPOINTS and settings["ttl"] == 5
    store = _lock.make_store(settings)
    assert isinstance(store, _lock_etcd.EtcdStore) and isinstance(store, _lock.LockStore)
    assert store.path_for("postgres:1") == "etcd:/erlmcp-dr/locks/postgres:1"


def test_the_inventory_wins_over_the_environment():
    environ = {"ERLMCP_DR_LOCK_STORE": "etcd", "ERLMCP_DR_LOCK_ETCD_ENDPOINTS": "127.0.0.1:1,127.0.0.1:2"}
    assert _lock.store_settings({}, environ=environ)["endpoints"] == ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    assert _lock.store_settings({"dr_lock_store": "directory"}, environ=environ)["kind"] == "directory"


@pytest.mark.parametrize("variables, names", [
    ({"dr_lock_store": "consul"}, ["dr_lock_store is 'consul'", "directory, etcd"]),
    ({"dr_lock_store": "etcd"}, ["dr_lock_etcd_endpoints is empty", "dr_lock_store: directory"]),
    ({"dr_lock_store": "etcd", "dr_lock_etcd_endpoints": ["ftp://x:1"]}, ["dr_lock_etcd_endpoints has 'ftp://x:1'"]),
    ({"dr_lock_store": "etcd", "dr_lock_etcd_endpoints": ["x:1"], "dr_lock_etcd_ttl": 1},
     ["dr_lock_etcd_ttl is 1", "from 2 to 3600"]),
    ({"dr_lock_store": "etcd", "dr_lock_etcd_endpoints": ["x:1"], "dr_lock_etcd_user": "dr"},
     ["dr_lock_etcd_user and dr_lock_etcd_password go together"]),
    ({"dr_lock_store": "etcd", "dr_lock_etcd_endpoints": ["x:1"], "dr_lock_etcd_ca_file": "/nonexistent/ca.pem"},
     ["dr_lock_etcd_ca_file is /nonexistent/ca.pem"]),
])
def test_bad_settings_are_refused_naming_the_variable(variables, names):
    with pytest.raises(_lock.LockStoreError) as refused:
        _lock.store_settings(variables, environ={})
    for name in names:
        assert name in str(refused.value)


def test_a_ca_file_makes_bare_endpoints_https(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here")
    settings = _lock_etcd.settings({"dr_lock_etcd_endpoints": "etcd-a:2379, etcd-b:2379",
                                    "dr_lock_etcd_ca_file": str(ca)}, environ={})
    assert settings["endpoints"] == ["https://etcd-a:2379", "https://etcd-b:2379"]


def test_the_take_is_one_transaction_on_create_revision_zero_under_the_lease():
    txn = _lock_etcd.take_txn("/erlmcp-dr/locks/k", '{"run_id": "r"}', 7587)
    key = base64.b64encode(b"/erlmcp-dr/locks/k").decode()
    assert txn["compare"] == [{"key": key, "result": "EQUAL", "target": "CREATE", "create_revision": "0"}]
    assert txn["success"][0]["request_put"]["lease"] == "7587"
    assert base64.b64decode(txn["success"][0]["request_put"]["value"]) == b'{"run_id": "r"}'
    assert txn["failure"] == [{"request_range": {"key": key}}]


def test_a_lost_take_reports_the_holder_with_its_fencing_token():
    kv = {"key": base64.b64encode(b"/k").decode(), "create_revision": "41", "lease": "7587",
          "value": base64.b64encode(json.dumps({"run_id": "other"}).encode()).decode()}
    succeeded, revision, found = _lock_etcd.txn_outcome(
        {"header": {"revision": "44"}, "responses": [{"response_range": {"kvs": [kv]}}]})
    assert (succeeded, revision) == (False, 44)
    assert _lock_etcd.kv_holder(found) == {"run_id": "other", "token": 41, "lease_id": 7587}
    assert _lock_etcd.txn_outcome({"header": {"revision": "45"}, "succeeded": True}) == (True, 45, None)


def test_a_record_that_is_not_json_is_named_unreadable():
    kv = {"key": base64.b64encode(b"/k").decode(), "create_revision": "3", "value": base64.b64encode(b"{").decode()}
    assert "does not hold a JSON record" in _lock_etcd.kv_holder(kv)["unreadable"]


@pytest.mark.parametrize("text, expected", [
    ('{"error":"etcdserver: request timed out","code":14}', True),
    ('{"error":"etcdserver: no leader"}', True),
    ('{"error":"etcdserver: requested lease not found","code":5}', False),
])
def test_which_member_errors_mean_try_the_next_member(text, expected):
    assert _lock_etcd.unavailable(text) is expected


def test_the_keeper_renews_at_a_third_of_the_ttl():
    assert _lock_etcd.refresh_due(100.0, 15) == 105.0


def test_fencing_costs_nothing_to_a_run_that_holds_no_etcd_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("ERLMCP_DR_LOCK_DIR", str(tmp_path))

    def never() -> dict:
        raise AssertionError("the settings are not read when nothing is held")

    assert _lock.fencing_refusal(os.getpid(), never) is None


def test_held_notes_are_private_and_per_process(tmp_path, monkeypatch):
    monkeypatch.setenv("ERLMCP_DR_LOCK_DIR", str(tmp_path))
    path = Path(_lock_etcd.record_held(os.getpid(), "postgres:1", 41, 7587, (None, None), "run-1"))
    assert path.stat().st_mode & 0o077 == 0 and path.parent.stat().st_mode & 0o077 == 0
    assert _lock_etcd.held_by(os.getpid()) == [
        {"key": "postgres:1", "token": 41, "lease_id": 7587, "keeper_pid": None, "keeper_start_ticks": None,
         "run_id": "run-1"}]
    assert _lock_etcd.held_by(os.getppid()) == []
    assert _lock_etcd.forget_held(os.getpid(), "postgres:1")["token"] == 41
    assert _lock_etcd.held_by(os.getpid()) == []


def test_a_held_lock_that_cannot_be_checked_refuses_the_step(tmp_path, monkeypatch):
    """Fails closed: a closed port stands for an unreachable etcd."""
    monkeypatch.setenv("ERLMCP_DR_LOCK_DIR", str(tmp_path))
    _lock_etcd.record_held(os.getpid(), "postgres:1", 41, 7587, (None, None), "run-1")
    variables = {"dr_lock_store": "etcd", "dr_lock_etcd_endpoints": ["127.0.0.1:9"], "dr_lock_etcd_timeout": 1}
    refusal = _lock.fencing_refusal(os.getpid(), lambda: variables)
    assert refusal.startswith("refused before changing anything")
    assert "no etcd member answered with a quorum" in refusal and "127.0.0.1:9" in refusal


def test_the_summary_carries_the_fencing_token_and_validates_against_the_schema():
    import jsonschema

    from erlmcp_dr.result import summary_schema

    paths.ensure_collection_importable()
    from ansible_collections.erlmcp.dr.plugins.module_utils._common import summary as _summary

    with_token = _summary.envelope("database_failover", lock_key="postgres:7", lock_token=4211)
    assert with_token["lock"] == {"key": "postgres:7", "token": 4211}
    jsonschema.validate(with_token, summary_schema())
    assert _summary.envelope("redis_backup", lock_key="redis:k")["lock"] == {"key": "redis:k"}  # directory store


def test_the_lab_inventory_keeps_the_lock_in_etcd_once_lab_up_made_its_members(tmp_path):
    from erlmcp_dr.lab import etcd as lab_etcd
    from erlmcp_dr.lab import lifecycle as lab

    cfg = lab.LabConfig(root=tmp_path, port_base=15432)
    assert "dr_lock_store" not in lab.inventory(cfg)["all"]["vars"]  # the directory store stays the default
    for member in lab_etcd.lab_cluster(cfg).members:
        member.data_dir.mkdir(parents=True)
    found = lab.inventory(cfg)["all"]["vars"]
    assert found["dr_lock_store"] == "etcd"
    assert found["dr_lock_etcd_endpoints"] == ["http://127.0.0.1:15452", "http://127.0.0.1:15454",
                                               "http://127.0.0.1:15456"]
    assert [m.name for m in lab_etcd.lab_cluster(cfg).members] == ["etcd-a", "etcd-b", "etcd-c"]


WARM = """
import os, sys
from erlmcp_dr import paths
paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._lock import etcd as _lock_etcd
from ansible_collections.erlmcp.dr.plugins.module_utils._common import module as _module
before = _module.warm_lock_store()
_lock_etcd.record_held(os.getpid(), "postgres:1", 41, 7587, (None, None), "run-1")
print(before, "etcd3gw" in sys.modules, _module.warm_lock_store(), "etcd3gw" in sys.modules)
"""


def test_the_etcd_client_is_imported_before_the_workers_fork_only_once_the_process_holds_an_etcd_lock(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", WARM], capture_output=True, text=True, check=True,
                         env=dict(os.environ, ERLMCP_DR_LOCK_DIR=str(tmp_path)))
    assert out.stdout.split() == ["False", "False", "True", "True"], out.stderr

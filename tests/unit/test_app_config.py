"""The application's database config: pure content, then the atomic, idempotent write (erlmcp.dr.app_db_config)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._app import db_config as app  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure  # noqa: E402


def node(name: str, port: int, role: str, upstream: str | None = None, **extra: Any) -> dict[str, Any]:
    facts = dict(name=name, host="127.0.0.1", port=port, reachable=True, role=role, writable=role == "primary",
                 upstream=upstream, streaming=upstream is not None if role == "standby" else None, foreign=False)
    facts.update(extra)
    return facts


def cluster(primary: str | None = "pg-b", **nodes: dict[str, Any]) -> dict[str, Any]:
    nodes = nodes or {
        "pg-a": node("pg-a", 5001, "standby", upstream="pg-b"),
        "pg-b": node("pg-b", 5002, "primary"),
        "pg-c": node("pg-c", 5003, "standby", upstream=None),
    }
    primaries = [n for n, f in nodes.items() if f["role"] == "primary" and f["writable"]]
    return dict(nodes=nodes, primary=primary, primaries=primaries,
                fenced_primaries=[n for n, f in nodes.items() if f["role"] == "primary" and not f["writable"]])


def test_content_names_the_primary_and_only_standbys_streaming_from_it_now():
    config = app.content(cluster())
    assert config == {"database": {"primary": "127.0.0.1:5002", "replicas": ["127.0.0.1:5001"],
                                   "primary_node": "pg-b", "replica_nodes": ["pg-a"]}}


def test_content_leaves_out_foreign_nodes_even_when_they_claim_the_primary():
    nodes = cluster()["nodes"]
    nodes["pg-x"] = node("pg-x", 5009, "standby", upstream=None, foreign=True,
                         wal_receiver=dict(status="streaming", sender_host="127.0.0.1", sender_port=5002))
    assert app.content(cluster(**nodes))["database"]["replica_nodes"] == ["pg-a"]


@pytest.mark.parametrize("primary, primaries", [(None, []), (None, ["pg-a", "pg-b"])])
def test_content_refuses_without_a_single_writable_primary(primary, primaries):
    data = cluster(primary=primary)
    data["primaries"] = primaries
    with pytest.raises(ModuleFailure, match="no single writable primary"):
        app.content(data)


def test_content_refuses_a_read_only_primary():
    nodes = cluster()["nodes"]
    nodes["pg-b"]["writable"] = False
    data = cluster(**nodes)
    data.update(primary="pg-b", primaries=["pg-b"])
    with pytest.raises(ModuleFailure, match="read-only"):
        app.content(data)


def params(path: Path, **extra: Any) -> dict[str, Any]:
    return dict(dict(path=str(path), cluster=cluster(), mode="0644"), **extra)


def test_writes_then_reports_no_change_and_keeps_the_previous_version(tmp_path):
    path = tmp_path / "database.json"
    path.write_text('{"database": {"primary": "old:1"}}\n')

    first = app.run(params(path), diff=True)
    second = app.run(params(path))

    assert first["changed"] is True and second["changed"] is False
    assert json.loads(path.read_text()) == first["config"]
    assert json.loads((tmp_path / "database.json.previous").read_text()) == {"database": {"primary": "old:1"}}
    assert first["previous"] == {"database": {"primary": "old:1"}} and first["previous_path"].endswith(".previous")
    assert '"old:1"' in first["diff"]["before"] and '"127.0.0.1:5002"' in first["diff"]["after"]
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["database.json", "database.json.previous"]


def test_check_mode_touches_nothing(tmp_path):
    path = tmp_path / "database.json"
    result = app.run(params(path), check_mode=True)
    assert result["changed"] is True and not path.exists() and list(tmp_path.iterdir()) == []


def test_mode_option_and_a_mode_change_alone_is_a_change(tmp_path):
    path = tmp_path / "database.json"
    app.run(params(path))
    result = app.run(params(path, mode="0600"))
    assert result["changed"] is True and oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert not (tmp_path / "database.json.previous").exists()


def test_missing_folder_fails_clearly_and_writes_nothing(tmp_path):
    with pytest.raises(ModuleFailure, match="does not exist"):
        app.run(params(tmp_path / "nope" / "database.json"))
    assert list(tmp_path.iterdir()) == []


def test_bad_mode_is_refused(tmp_path):
    with pytest.raises(ModuleFailure, match="octal"):
        app.run(params(tmp_path / "database.json", mode="rw-r--r--"))

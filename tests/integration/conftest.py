"""Fixtures for tests on the real lab: fresh PostgreSQL clusters and a way to run one module."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ansible_runner
import pytest

from erlmcp_dr import lab, paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils import _postgres as pg  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture
def fresh_lab() -> Iterator[lab.LabConfig]:
    """A brand-new lab (pg-a primary, pg-b and pg-c streaming), stopped and removed afterwards.

    Its folder sits under /tmp, not pytest's tmp_path: the servers run as `postgres`,
    who cannot enter root's private pytest folders.
    """
    root = Path(tempfile.mkdtemp(prefix="erlmcp-dr-lab-"))
    cfg = lab.LabConfig(root=root, port_base=lab.free_port_base())
    try:
        lab.reset(cfg)
        lab.write_inventory(cfg, root / "inventory" / "hosts.yml")
        yield cfg
    finally:
        lab.down(cfg)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """Run folders and locks of this test only (inherited by CLI subprocesses)."""
    path = tmp_path / "home"
    monkeypatch.setenv("ERLMCP_DR_HOME", str(path))
    return path


def sql(cfg: lab.LabConfig, node: str, query: str, args: Any = None) -> list[dict[str, Any]]:
    """Run one statement on a lab node as the lab superuser; rows as dicts."""
    with pg.connect(cfg.node(node).conn_params()) as conn, conn.cursor() as cur:
        cur.execute(query, args)
        return [dict(r) for r in cur.fetchall()] if cur.description else []


def state(cfg: lab.LabConfig, node: str) -> dict[str, Any]:
    """The node's role, timeline and LSNs (module_utils/_postgres.node_state)."""
    with pg.connect(cfg.node(node).conn_params()) as conn:
        return pg.node_state(conn)


def lab_inventory(cfg: lab.LabConfig) -> Path:
    return cfg.root / "inventory" / "hosts.yml"


def login_args(cfg: lab.LabConfig, node: str) -> dict[str, Any]:
    """Connection options for a module speaking SQL to one lab node."""
    return {
        "login_host": "127.0.0.1",
        "login_port": cfg.node(node).port,
        "login_user": lab.SUPERUSER,
        "login_password": lab.LAB_PASSWORD,
    }


def run_module(module: str, args: dict[str, Any], check: bool = False, diff: bool = False) -> dict[str, Any]:
    """Run one module on localhost through ansible-runner; returns its result (with 'failed')."""
    with tempfile.TemporaryDirectory(prefix="erlmcp-dr-mod-") as private:
        cmdline = " ".join(flag for flag, on in (("--check", check), ("--diff", diff)) if on)
        runner = ansible_runner.run(
            private_data_dir=private,
            host_pattern="localhost",
            module=module,
            module_args=json.dumps(args),
            inventory="localhost ansible_connection=local ansible_python_interpreter=" + _python(),
            cmdline=cmdline or None,
            envvars={"ANSIBLE_COLLECTIONS_PATH": str(paths.collections_path()), "PATH": _venv_path()},
            quiet=True,
        )
        for event in runner.events:
            if event.get("event") in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable"):
                result = dict(event["event_data"]["res"])
                result.setdefault("failed", event["event"] != "runner_on_ok")
                return result
        raise AssertionError(f"{module} produced no result; stdout:\n{runner.stdout.read()}")


def _python() -> str:
    return sys.executable


def _venv_path() -> str:
    """ansible-runner finds `ansible` on PATH: put this interpreter's bin folder first."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])

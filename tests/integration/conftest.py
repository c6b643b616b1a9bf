"""Fixtures for tests on the real lab: copies of one lab template, and a way to run one module.

The helpers themselves live in runbook_helpers.py; the names module tests import from here
(sql, state, lab_inventory, login_args, run_module, and for Redis redis_client, redis_nodes_arg,
redis_login_args, wait_redis_replicated) are re-exported.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import moto_server
import pytest
from runbook_helpers import (  # noqa: F401  (re-exported for the module tests)
    TEMPLATE,
    dns_answers,
    dns_args,
    lab_inventory,
    login_args,
    new_dns_lab,
    new_lab,
    redis_client,
    redis_login_args,
    redis_nodes_arg,
    run_module,
    sql,
    state,
    untouched_guard,
    wait_redis_replicated,
)

from erlmcp_dr.lab import dns as lab_dns
from erlmcp_dr.lab import lifecycle as lab

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session", autouse=True)
def _remove_lab_template() -> Iterator[None]:
    """The template is built on first use (a session without lab tests builds none) and removed at the end."""
    yield
    TEMPLATE.remove()


@pytest.fixture(scope="session")
def lab_template() -> lab.LabConfig:
    """This session's (this xdist worker's) lab template: built, stopped cleanly; copy it, never start it."""
    return TEMPLATE.get()


@pytest.fixture
def fresh_lab(lab_template: lab.LabConfig) -> Iterator[lab.LabConfig]:
    """A lab of its own (pg-a primary, pg-b and pg-c streaming), copied from the session's template,
    with its inventory at lab_inventory(cfg); stopped by PID and removed afterwards."""
    with new_lab() as cfg:
        yield cfg


@pytest.fixture(scope="module")
def shared_lab(request: pytest.FixtureRequest, lab_template: lab.LabConfig) -> Iterator[lab.LabConfig]:
    """One lab for a module's read-only tests; at the module's end it asserts that no role, timeline,
    upstream or postmaster pid changed (use `untouched` to check after every test)."""
    with new_lab() as cfg, untouched_guard(cfg, f"a test of {request.module.__name__}"):
        yield cfg


@pytest.fixture
def untouched(request: pytest.FixtureRequest, shared_lab: lab.LabConfig) -> Iterator[lab.LabConfig]:
    """The shared lab, checked after this test: it must not have changed anything in it."""
    with untouched_guard(shared_lab, request.node.name):
        yield shared_lab


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run folders and locks of this test only (inherited by CLI subprocesses)."""
    path = tmp_path / "home"
    monkeypatch.setenv("ERLMCP_DR_HOME", str(path))
    return path


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's server (S3, Route 53) on a loopback port, one per session; `moto_server.reset(url)` cleans it."""
    with moto_server.running(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture
def moto(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A clean moto account for this test, with fake credentials in the environment (inherited by Ansible)."""
    moto_server.reset(moto_endpoint)
    for name, value in moto_server.CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return moto_endpoint


@pytest.fixture(scope="module")
def dns_lab() -> Iterator[lab.LabConfig]:
    """The lab's DNS servers alone (Knot primary and secondary), started once per test module."""
    with new_dns_lab() as cfg:
        yield cfg


@pytest.fixture
def dns_zone(dns_lab: lab.LabConfig) -> lab.LabConfig:
    """dns_lab with both servers running and the zone as created (api/health at region a), in sync."""
    lab_dns.reset_zone(dns_lab)
    return dns_lab

"""Fixtures shared by the unit tests that run the package against the fixture playbooks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "playbooks"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """Run folders and locks of this test only; runbooks read from the fixture playbooks."""
    home = tmp_path / "home"
    monkeypatch.setenv("ERLMCP_DR_HOME", str(home))
    monkeypatch.setenv("ERLMCP_DR_PLAYBOOKS", str(FIXTURES))
    return home


@pytest.fixture
def inventory(tmp_path):
    path = tmp_path / "hosts.ini"
    path.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n",
                    encoding="utf-8")
    return path

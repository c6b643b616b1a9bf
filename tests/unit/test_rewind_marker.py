"""pg_standby_follow's "rewind in progress" marker: where it lives, what it holds, when a rewind has ended."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import rewind_marker as m  # noqa: E402

CONTROL = {"Database cluster state": "shut down", "Latest checkpoint location": "0/6000028",
           "Latest checkpoint's TimeLineID": "1", "Minimum recovery ending location": "0/0",
           "Database system identifier": "7000000000000000001"}
OWN = {"postgresql.conf": "port = 5433\n", "pg_hba.conf": "local all all trust\n", "standby.signal": None}


def test_marker_lives_beside_the_data_directory_named_after_it(tmp_path: Path) -> None:
    assert m.marker_path(str(tmp_path / "main") + "/") == str(tmp_path / ".main.erlmcp-dr.rewind-in-progress")
    assert m.marker_path(str(tmp_path / "a" / "data")) != m.marker_path(str(tmp_path / "b" / "data"))


def test_marker_round_trip_private_and_removed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    assert m.read_marker(str(data)) is None

    started = m.start_marker(str(data), OWN, CONTROL, "db2:5432")

    path = Path(m.marker_path(str(data)))
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert m.read_marker(str(data)) == started == json.loads(path.read_text())
    assert started["phase"] == m.PHASE_REWINDING and started["own_files"] == OWN and started["source"] == "db2:5432"
    assert "Database system identifier" not in started["control"]
    rewound = m.mark_rewound(str(data), started)
    assert m.read_marker(str(data))["phase"] == m.PHASE_REWOUND and rewound["own_files"] == OWN
    assert m.remove_marker(str(data)) is True and not path.exists()
    assert m.remove_marker(str(data)) is False
    assert not [name for name in os.listdir(tmp_path) if name.startswith("..")]  # no temp file left


def test_rewind_counts_as_ended_only_when_the_marker_or_the_control_file_says_so() -> None:
    marker = {"phase": m.PHASE_REWINDING, "control": m.control_identity(CONTROL), "own_files": OWN}
    # pg_rewind writes the control file last: unchanged means it never got there, whatever it copied
    assert m.rewind_finished(marker, dict(CONTROL)) is False
    # a crashed node's single-user recovery, pg_rewind's first step, writes a new checkpoint on the same timeline:
    # still not ended (the failback kill matrix's case: taken for ended, the half-rewound node was started)
    recovered = dict(CONTROL, **{"Latest checkpoint location": "0/7000060"})
    assert m.rewind_finished(dict(marker, control=m.control_identity(dict(CONTROL, **{
        "Database cluster state": "in production"}))), recovered) is False
    rewritten = dict(CONTROL, **{"Database cluster state": "in archive recovery",
                                 "Latest checkpoint's TimeLineID": "2",
                                 "Minimum recovery ending location": "0/9000060"})
    assert m.rewind_finished(marker, rewritten) is True
    assert m.rewind_finished(dict(marker, phase=m.PHASE_REWOUND), dict(CONTROL)) is True


@pytest.mark.parametrize("text", ["not json", "[]", json.dumps({"phase": "rewinding"}),
                                  json.dumps({"phase": "other", "own_files": {}})])
def test_a_marker_this_collection_did_not_write_is_an_error_naming_it(tmp_path: Path, text: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    Path(m.marker_path(str(data))).write_text(text)
    with pytest.raises(m.MarkerError, match="rewind marker .*interrupted.*remove the marker"):
        m.read_marker(str(data))

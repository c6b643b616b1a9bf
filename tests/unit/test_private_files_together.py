"""paths.write_private_files: several files written as write_private_atomic writes each (0600, whole, durable),
their fsyncs together; a file that cannot be written is returned with its error and the others are still written.
The full-disk case is tests/integration/test_full_state_folder.py (a real small file system)."""

from __future__ import annotations

import os
import stat

from erlmcp_dr.paths import write_private_files


def test_every_file_is_written_private_and_whole_and_no_temp_file_stays(tmp_path):
    first, second = tmp_path / "result.json", tmp_path / "report.md"
    second.write_text("old")
    os.chmod(second, 0o644)
    assert write_private_files({first: '{"a": 1}\n', second: "é report\n" * 1000}) == {}
    assert first.read_text() == '{"a": 1}\n' and second.read_text(encoding="utf-8") == "é report\n" * 1000
    assert {stat.S_IMODE(path.stat().st_mode) for path in (first, second)} == {0o600}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["report.md", "result.json"]


def test_a_file_that_cannot_be_written_is_named_and_the_others_are_written(tmp_path):
    written, missing_folder = tmp_path / "run.json", tmp_path / "gone" / "report.html"
    failed = write_private_files({missing_folder: "x", written: "marker\n"})
    assert list(failed) == [missing_folder] and isinstance(failed[missing_folder], FileNotFoundError)
    assert written.read_text() == "marker\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run.json"]

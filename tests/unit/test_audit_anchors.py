"""The audit trail's head kept outside the file (audit.find_anchors / check_anchors / check_macs, and
`runbook audit verify`): what the hash chain alone could not see, issue 16 row 7 - records cut from the end
(`head -n -3`), an emptied trail (`: >`), a deleted one (`rm`), a chain recomputed with fresh hashes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from erlmcp_dr import audit, cli, runner

KEY = "k" * 32


@pytest.fixture
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "locks"
    monkeypatch.setenv("ERLMCP_DR_LOCK_DIR", str(folder))
    monkeypatch.delenv(audit.KEY_FILE_ENV, raising=False)
    monkeypatch.delenv(audit.KEY_ENV, raising=False)
    return folder


def _shell(command: str, path: Path) -> None:
    subprocess.run(["bash", "-c", command, "tamper", str(path)], check=True)


def _runs(inventory: Path, count: int) -> list:
    return [runner.run("local_smoke", inventory=inventory, run_id=f"smoke-{number}") for number in range(1, count + 1)]


@pytest.fixture
def two_runs(home: Path, inventory: Path, lock_dir: Path) -> list:
    return _runs(inventory, 2)


def _verify(capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = cli.main(["audit", "verify"])
    return code, capsys.readouterr().out


def test_each_run_anchors_the_head_after_its_last_record(two_runs: list, lock_dir: Path, capsys) -> None:
    records = audit.records()
    ends = [record for record in records if record["kind"] == "run_end"]
    for result, end in zip(two_runs, ends, strict=True):
        saved = json.loads((Path(result.run_dir) / "result.json").read_text())
        assert saved["audit_head"]["seq"] == end["seq"] and saved["audit_head"]["hash"] == end["hash"]
    head_file = audit.head_anchor_path(audit.audit_path())
    assert head_file.parent == lock_dir and oct(head_file.stat().st_mode & 0o777) == "0o600"
    assert json.loads(head_file.read_text())["seq"] == len(records) == 6
    code, out = _verify(capsys)
    assert code == 0 and "6 record(s), chain intact" in out and "checked against 3 anchor(s)" in out
    assert "not checked: no audit key" in out  # what it cannot see without a key, said plainly


def test_records_cut_from_the_end_are_named(two_runs: list, capsys) -> None:
    _shell('head -n -3 "$1" > "$1.cut" && cat "$1.cut" > "$1" && rm "$1.cut"', audit.audit_path())
    assert audit.verify() == []  # the chain alone is intact
    code, out = _verify(capsys)
    assert code == 1, out
    assert "records #4-#6 are missing from the end of the trail (its last record is #3" in out


def test_an_emptied_trail_is_named(two_runs: list, capsys) -> None:
    _shell(': > "$1"', audit.audit_path())
    code, out = _verify(capsys)
    assert code == 1 and "is empty: 3 anchor(s) name records up to #6" in out and "emptied" in out, out


def test_a_deleted_trail_is_named(two_runs: list, capsys) -> None:
    _shell('rm "$1"', audit.audit_path())
    code, out = _verify(capsys)
    assert code == 1 and "is missing: 3 anchor(s) name records up to #6" in out and "deleted" in out, out


def _recompute(path: Path, edit) -> None:
    """Rewrites the chain as someone without the key would: edit, then fresh prev and hash for every record."""
    previous = audit.GENESIS
    lines = []
    for record in audit.records(path):
        edit(record)
        record.pop("hash", None)
        record["prev"] = previous
        record["hash"] = audit.record_hash(record)
        previous = record["hash"]
        lines.append(audit.canonical(record))
    path.write_text("\n".join(lines) + "\n")


def _hide_operator(record: dict) -> None:
    if record["run_id"] == "smoke-1":
        record["who"]["operator"] = "someone-else"


def test_a_recomputed_chain_is_named_by_the_anchors(two_runs: list, capsys) -> None:
    _recompute(audit.audit_path(), _hide_operator)
    assert audit.verify() == []
    code, out = _verify(capsys)
    assert code == 1 and "record #3 is not the one" in out and "the chain was rewritten from #3 or earlier" in out, out


def test_a_chain_recomputed_with_its_anchors_is_named_by_the_key(home: Path, inventory: Path, lock_dir: Path,
                                                                 monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                 capsys) -> None:
    key_file = tmp_path / "audit.key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    monkeypatch.setenv(audit.KEY_FILE_ENV, str(key_file))
    _runs(inventory, 1)
    assert all(record.get("mac") for record in audit.records())
    code, out = _verify(capsys)
    assert code == 0 and "MACs checked" in out and "no audit key" not in out, out

    # Without the key, the forger recomputes the chain and every anchor: only the MACs still tell.
    path = audit.audit_path()
    _recompute(path, lambda record: record.pop("mac", None))
    head = audit.records(path)[-1]
    for anchor_file in [audit.head_anchor_path(path), *home.glob("runs/*/result.json")]:
        data = json.loads(anchor_file.read_text())
        target = data.get("audit_head", data)
        target.update(hash=head["hash"], seq=head["seq"])
        target.pop("mac", None)
        anchor_file.write_text(json.dumps(data))
    code, out = _verify(capsys)
    assert code == 1 and "record(s) 1-3: carry no MAC though a key is set" in out, out


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "audit.key"
    key_file.write_text(KEY)
    key_file.chmod(0o644)
    monkeypatch.setenv(audit.KEY_FILE_ENV, str(key_file))
    with pytest.raises(audit.AuditKeyError, match=r"mode 0644: expected 0600 or stricter \(chmod 600"):
        audit.audit_key()
    monkeypatch.delenv(audit.KEY_FILE_ENV)
    monkeypatch.setenv(audit.KEY_ENV, "short")
    with pytest.raises(audit.AuditKeyError, match="is 5 bytes: expected at least 16"):
        audit.audit_key()


def test_a_wrong_mac_is_named(tmp_path: Path, lock_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(audit.KEY_ENV, KEY)
    path = tmp_path / "audit" / "audit.jsonl"
    for number in range(3):
        audit.append(audit.run_start(f"r{number}", "x", {}, check=False, operator=None, inventory="i"), path)
    assert audit.check_macs(path, KEY.encode()) == []
    assert audit.check_macs(path, b"another key of 16+ bytes") == [
        "record(s) 1-3: MAC does not match the audit key: written or rewritten without the key (a recomputed chain)"]

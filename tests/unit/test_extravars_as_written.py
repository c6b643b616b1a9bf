"""The extra vars the runner writes reach the playbook as the strings they were (issue 16 row 11): `*`,
`2026-13-45T99:00:00Z`, `0123`, `true`, `=` used to make Ansible's YAML loader fail (a parse dump instead of the
parameter check) or change type, because ansible-core resolves an `!unsafe` scalar's type from its text."""

from __future__ import annotations

from pathlib import Path

import pytest

from erlmcp_dr import runner

TRICKY = ["*", "2026-13-45T99:00:00Z", "2026-12-06", "0123", "1e3", "true", "no", "null", "~", "=", "<<", "!", "&",
          ".inf", "0x1F", "12:30:00"]


def _load_as_ansible_does(path: Path) -> dict:
    from ansible.parsing.dataloader import DataLoader

    return DataLoader().load_from_file(str(path))


@pytest.mark.parametrize("value", TRICKY)
def test_a_string_that_looks_like_another_type_arrives_as_that_string(tmp_path: Path, value: str) -> None:
    path = runner.write_extravars(tmp_path, {"candidate": value, "items": [value], "nested": {value: value}})
    loaded = _load_as_ansible_does(path)
    assert loaded["candidate"] == value and isinstance(loaded["candidate"], str)
    assert loaded["items"] == [value] and loaded["nested"] == {value: value}


def test_template_markers_stay_unsafe_and_other_types_keep_theirs(tmp_path: Path) -> None:
    from ansible.template import is_trusted_as_template

    path = runner.write_extravars(tmp_path, {"target": "{{ lookup('pipe', 'id') }}", "count": 3, "flag": True,
                                             "plain": "pg-b"})
    loaded = _load_as_ansible_does(path)
    assert loaded == {"target": "{{ lookup('pipe', 'id') }}", "count": 3, "flag": True, "plain": "pg-b"}
    assert not is_trusted_as_template(loaded["target"])  # data, never rendered


def test_a_run_gets_the_value_as_given(home: Path, inventory: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERLMCP_DR_LOCK_DIR", str(tmp_path / "locks"))
    for value in ("*", "2026-13-45T99:00:00Z"):
        result = runner.run("local_smoke", inventory=inventory, extravars={"greeting": value}, check=True)
        assert result.succeeded, result.error
        assert result.facts["summary"]["greeting"] == value

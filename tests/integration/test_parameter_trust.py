"""Parameters are data, never templates (issue 5 row 3, part B), for every parameter of every runbook.

Each parameter gets a value that would run a command on the controller and print an inventory
secret if Ansible templated it: `{{ lookup('pipe', 'touch <marker>') }}-{{ pg_replication_password }}`.
It goes in through (1) the CLI `runbook plan`, (2) `erlmcp_dr.run(..., check=True)`, (3) plain
`ansible-playbook --check -e @file.yml` and (4) inline `-e key=value`. The marker file is never
created, the secret never appears in the output, the run folders or the job events, and each
ends with a clear error: through the CLI and the API a non-text parameter is refused before
anything runs, a text parameter is a literal value the runbook's own checks refuse.

(3) and (4) are extra vars we do not write (AWX surveys, a plain ansible-playbook): Ansible trusts
them, so the runbook's first task, erlmcp.dr.runbook_params, refuses template markers. They run
a playbook made from each runbook's spec with that task first, and the real playbooks.

One lab for the whole module, in check mode only: nothing here may change it (asserted at the end).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from runbook_helpers import VENV_BIN, Cli, files_containing, inventory_path, new_lab, runbook_cli, topology

import erlmcp_dr
from erlmcp_dr import catalog
from erlmcp_dr.errors import ParameterError
from erlmcp_dr.lab import lifecycle as lab

RUNBOOKS = catalog.discover(Path(__file__).resolve().parents[2] / "playbooks")
PARAMETERS = [(runbook.name, name) for runbook in RUNBOOKS.values() for name in runbook.parameters]
SECRET = lab.LAB_PASSWORD  # the inventory's pg_replication_password
TEXT_TYPES = ("str", "path")
HANG_GUARD = 600


def payload(marker: Path) -> str:
    return f"{{{{ lookup('pipe', 'touch {marker}') }}}}-{{{{ pg_replication_password }}}}"


def is_text(option: dict[str, Any]) -> bool:
    kind = option.get("type") or "str"
    if kind == "list":  # a list of text takes any one string as its one item
        kind = option.get("elements") or "str"
    return kind in TEXT_TYPES and not option.get("choices")


def required_others(runbook: catalog.Runbook, tested: str) -> dict[str, str]:
    """Valid values for the other required parameters (a choice, else a lab host), so the run gets to the tested
    one."""
    return {name: str(option["choices"][0]) if option.get("choices") else "pg-b"
            for name, option in runbook.parameters.items() if option.get("required") and name != tested}


@pytest.fixture(scope="module")
def trust_lab(tmp_path_factory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("trust") / "home"
    with new_lab() as cfg, pytest.MonkeyPatch.context() as patch:
        patch.setenv("ERLMCP_DR_HOME", str(home))
        patch.delenv("ERLMCP_DR_PLAYBOOKS", raising=False)
        before = topology(cfg)
        yield {"cfg": cfg, "inventory": str(inventory_path(cfg)), "home": home,
               "markers": tmp_path_factory.mktemp("markers")}
        assert topology(cfg) == before, "the lab changed: these tests run plans only"


@pytest.fixture
def marker(trust_lab) -> Path:
    return trust_lab["markers"] / f"marker-{secrets.token_hex(4)}"


def assert_no_trace(marker: Path, *texts: str, folders: tuple[Path, ...] = ()) -> None:
    assert not marker.exists(), f"{marker} was created: a parameter was templated"
    for text in texts:
        assert SECRET not in text, f"the inventory secret was printed:\n{text[-3000:]}"
    for folder in folders:
        assert files_containing(folder, SECRET.encode()) == [], f"the inventory secret is in {folder}"


# ---------------------------------------------------------------- (1) the CLI, (2) the API


def cli_in_this_process(args: list[str], capsys: pytest.CaptureFixture[str]) -> Cli:
    """`runbook ARGS` through the CLI's own main() in this process: for a value the CLI refuses before anything runs,
    the same code as the `runbook` command without an interpreter's start (about a second of CPU each, on a suite the
    machine's cores are busy with). The audit's entry point the CLI sets is put back afterwards."""
    from erlmcp_dr import audit, cli

    entry_point = audit.entry_point
    capsys.readouterr()
    try:
        rc = cli.main(args)
    finally:
        audit.set_entry_point(entry_point)
    out = capsys.readouterr()
    return Cli(list(args), rc, out.out, out.err)


@pytest.mark.parametrize("runbook_name, parameter", PARAMETERS)
def test_cli_plan_treats_a_template_as_data(trust_lab, marker, capsys, runbook_name, parameter):
    runbook = RUNBOOKS[runbook_name]
    option = runbook.parameters[parameter]
    others = [f"{name}={value}" for name, value in required_others(runbook, parameter).items()]
    args = ["plan", runbook_name, "-i", trust_lab["inventory"], "-e", f"{parameter}={payload(marker)}"]
    for item in others:
        args += ["-e", item]
    # A text value runs the plan: through the `runbook` command itself. Any other is refused before anything runs:
    # through the same main() in this process.
    cli = runbook_cli(*args) if is_text(option) else cli_in_this_process(args, capsys)
    runs = trust_lab["home"] / "runs"
    assert_no_trace(marker, cli.stdout, cli.stderr, folders=(runs,) if runs.is_dir() else ())
    if is_text(option):  # a literal value: the plan runs and the runbook's own checks refuse it
        assert cli.rc == 1, cli
        assert "[FAILED]" in cli.stdout and "failed at:" in cli.stdout, cli
    else:  # refused before anything runs, naming the parameter
        assert cli.rc == 2, cli
        assert f"parameter '{parameter}'" in cli.stderr, cli
        assert "Traceback" not in cli.stderr


@pytest.mark.parametrize("runbook_name, parameter", PARAMETERS)
def test_api_plan_treats_a_template_as_data(trust_lab, marker, runbook_name, parameter):
    runbook = RUNBOOKS[runbook_name]
    extravars = {parameter: payload(marker), **required_others(runbook, parameter)}
    if not is_text(runbook.parameters[parameter]):
        with pytest.raises(ParameterError) as caught:
            erlmcp_dr.run(runbook_name, inventory=trust_lab["inventory"], extravars=extravars, check=True)
        assert caught.value.parameter == parameter
        assert_no_trace(marker, str(caught.value))
        return
    result = erlmcp_dr.run(runbook_name, inventory=trust_lab["inventory"], extravars=extravars, check=True)
    assert_no_trace(marker, result.to_json(), folders=(Path(result.run_dir),))
    assert not result.succeeded and result.failing_step is not None, result.to_json()
    assert (Path(result.run_dir) / "artifacts" / result.run_id / "job_events").is_dir()


def test_the_runner_writes_every_string_unsafe(trust_lab, marker, tmp_path):
    """The extra vars file ansible-runner passes with -e @file: every string, nested keys too, is !unsafe."""
    from erlmcp_dr.runner import write_extravars

    path = write_extravars(tmp_path, {"candidate": payload(marker), "n": 5, "nested": {"{{ k }}": ["{{ v }}", 1]}})
    text = path.read_text()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert text.count("!unsafe") == 6, text  # keys candidate, n, nested, {{ k }}; values of candidate, {{ v }}
    from ansible.parsing.yaml.loader import AnsibleLoader
    from ansible.template import is_trusted_as_template

    loaded = AnsibleLoader(text).get_single_data()
    assert loaded["n"] == 5
    strings = [loaded["candidate"], *loaded["nested"], loaded["nested"]["{{ k }}"][0]]
    assert not any(is_trusted_as_template(value) for value in strings)


# ---------------------------------------------------------------- (3) -e @file, (4) -e key=value: vars we do not write


def spec_playbook(runbook: catalog.Runbook, directory: Path) -> Path:
    """A playbook with the runbook's spec whose first task is erlmcp.dr.runbook_params, as in every runbook;
    later tasks would template every parameter if they ran."""
    play = {
        "name": f"{runbook.name} parameters",
        "hosts": "localhost",
        "gather_facts": False,
        "vars": {"runbook": {"parameters": runbook.parameters}},
        "tasks": [
            {"name": "Resolve the runbook's parameters", "erlmcp.dr.runbook_params": None},
            {"name": "Use every parameter", "ansible.builtin.debug": {"msg": "{{ dr }}"}},
            {"name": "Read every raw value", "loop": sorted(runbook.parameters),
             "ansible.builtin.debug": {"msg": "{{ lookup('ansible.builtin.vars', item) }}"}},
        ],
    }
    path = directory / f"{runbook.name}.yml"
    path.write_text("---\n" + yaml.safe_dump([play], sort_keys=False))
    return path


def ansible_playbook(trust_lab: dict[str, Any], playbook: Path, extra: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", "")]))
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), "--check", "-i", trust_lab["inventory"], str(playbook),
                           *extra], capture_output=True, text=True, env=env, timeout=HANG_GUARD, check=False)


def every_parameter(runbook: catalog.Runbook, markers: Path) -> dict[str, str]:
    return {name: payload(markers / f"{runbook.name}-{name}") for name in runbook.parameters}


def assert_refused(done: subprocess.CompletedProcess, runbook: catalog.Runbook, markers: Path) -> None:
    output = done.stdout + done.stderr
    created = sorted(path.name for path in markers.glob(f"{runbook.name}-*"))
    assert created == [], f"templated parameters ran their lookup: {created}\n{output[-3000:]}"
    assert SECRET not in output, output[-3000:]
    assert done.returncode == 2, output[-3000:]
    flat = " ".join(output.split()).replace("''", "'")
    for name in runbook.parameters:
        assert f"parameter '{name}' contains template markers ({{{{ ... }}}})" in flat, (name, output[-3000:])
    assert "runbook parameters are data and are never templated" in flat


@pytest.mark.parametrize("runbook_name", sorted(RUNBOOKS))
def test_ansible_playbook_extra_vars_file_with_templates_is_refused(trust_lab, tmp_path, runbook_name):
    runbook = RUNBOOKS[runbook_name]
    markers = trust_lab["markers"]
    values = tmp_path / "extra.yml"
    values.write_text(yaml.safe_dump(every_parameter(runbook, markers)))
    done = ansible_playbook(trust_lab, spec_playbook(runbook, tmp_path), ["-e", f"@{values}"])
    assert_refused(done, runbook, markers)


@pytest.mark.parametrize("runbook_name", sorted(RUNBOOKS))
def test_ansible_playbook_inline_extra_vars_with_templates_are_refused(trust_lab, tmp_path, runbook_name):
    runbook = RUNBOOKS[runbook_name]
    markers = trust_lab["markers"]
    extra = []
    for name, value in every_parameter(runbook, markers).items():
        extra += ["-e", f"{name}={value}"]
    done = ansible_playbook(trust_lab, spec_playbook(runbook, tmp_path), extra)
    assert_refused(done, runbook, markers)


def test_unsafe_values_in_an_extra_vars_file_are_data(trust_lab, tmp_path, marker):
    """What the runner writes (and what a careful AWX user can write): !unsafe values pass as literal text."""
    playbook = Path(__file__).resolve().parents[1] / "fixtures" / "playbooks" / "controller" / "trusted_params.yml"
    values = tmp_path / "extra.yml"
    values.write_text(f'target: !unsafe "{payload(marker)}"\n'
                      'hosts_to_check: [!unsafe "{{ pg_replication_password }}"]\n')
    done = ansible_playbook(trust_lab, playbook, ["-e", f"@{values}"])
    assert done.returncode == 0, done.stdout[-3000:]
    assert_no_trace(marker, done.stdout, done.stderr)
    assert f"target={payload(marker)}" in " ".join(done.stdout.split()).replace("''", "'"), done.stdout


@pytest.mark.parametrize("runbook_name", sorted(RUNBOOKS))
def test_real_playbook_refuses_templated_extra_vars(trust_lab, tmp_path, runbook_name):
    runbook = RUNBOOKS[runbook_name]
    markers = tmp_path / "markers"
    markers.mkdir()
    values = tmp_path / "extra.yml"
    values.write_text(yaml.safe_dump(every_parameter(runbook, markers)))
    done = ansible_playbook(trust_lab, runbook.path, ["-e", f"@{values}"])
    assert_refused(done, runbook, markers)


def test_a_jinja2_header_that_changes_the_markers_is_refused(trust_lab, tmp_path, marker):
    """`#jinja2:variable_start_string:'[['` makes Ansible template `[[ ... ]]`: refused like {{ }}."""
    playbook = Path(__file__).resolve().parents[1] / "fixtures" / "playbooks" / "controller" / "trusted_params.yml"
    values = tmp_path / "extra.yml"
    header = "#jinja2:variable_start_string:'[[', variable_end_string:']]'"
    values.write_text(yaml.safe_dump({"target": f"{header}\n[[ lookup('pipe', 'touch {marker}') ]]"}))
    done = ansible_playbook(trust_lab, playbook, ["-e", f"@{values}"])
    assert_no_trace(marker, done.stdout, done.stderr)
    assert done.returncode == 2, done.stdout[-3000:]
    flat = " ".join(done.stdout.split()).replace("''", "'")
    assert "parameter 'target' contains template markers (a #jinja2: header)" in flat, done.stdout[-3000:]


def test_templates_nested_in_lists_and_mappings_are_refused_unrendered(trust_lab, tmp_path):
    """Reading a nested value must not render it: the action walks the raw containers."""
    playbook = Path(__file__).resolve().parents[1] / "fixtures" / "playbooks" / "controller" / "trusted_params.yml"
    markers = [tmp_path / f"nested-{index}" for index in range(3)]
    touch = [f"{{{{ lookup('pipe', 'touch {marker}') }}}}" for marker in markers]
    values = {"options": {"a": touch[0], "b": [touch[1]], touch[2]: 1}, "hosts_to_check": ["pg-a"]}
    done = ansible_playbook(trust_lab, playbook, ["-e", json.dumps(values)])
    assert [marker.name for marker in markers if marker.exists()] == []
    assert done.returncode == 2, done.stdout[-3000:]
    flat = " ".join(done.stdout.split()).replace("''", "'")
    assert "parameter 'options' contains template markers ({{ ... }}) (in options.a, options.b[0]" in flat, flat


# ---------------------------------------------------------------- (5) a composed run (runbook run, not a plan)
# A composed runbook's run is not its playbook: compose/run.py checks the parameters, the regions and the inventory
# before it takes a lock or writes a run folder. Hostile and wrong input must stop there, changing nothing.

COMPOSED = sorted(name for name, runbook in RUNBOOKS.items() if runbook.workflow is not None)


def left_behind(trust_lab: dict[str, Any]) -> dict[str, list[str]]:
    """What a run leaves on disk before its first step: its run folder, its lock records, grace history."""
    home, locks = trust_lab["home"], Path(trust_lab["cfg"].root) / "locks"
    return {name: sorted(str(path.relative_to(folder)) for path in folder.rglob("*")) if folder.is_dir() else []
            for name, folder in (("runs", home / "runs"), ("locks", locks), ("grace", home / "grace"))}


@pytest.mark.parametrize("runbook_name", COMPOSED)
def test_composed_run_refuses_templates_in_every_parameter_before_anything_runs(trust_lab, runbook_name):
    runbook = RUNBOOKS[runbook_name]
    markers = trust_lab["markers"]
    values = every_parameter(runbook, markers)
    before = left_behind(trust_lab)
    with pytest.raises(ParameterError) as caught:
        erlmcp_dr.run(runbook_name, inventory=trust_lab["inventory"], extravars=values)
    assert caught.value.parameter in runbook.parameters
    extra = [item for name, value in values.items() for item in ("-e", f"{name}={value}")]
    cli = runbook_cli("run", runbook_name, "-i", trust_lab["inventory"], *extra, "--yes")
    assert cli.rc == 2, cli
    assert "parameter" in cli.stderr and "Traceback" not in cli.stderr, cli
    assert sorted(path.name for path in markers.glob(f"{runbook_name}-*")) == []
    assert all(SECRET not in text for text in (str(caught.value), cli.stdout, cli.stderr)), cli
    assert left_behind(trust_lab) == before


def _region_without_database(data: dict[str, Any]) -> None:
    """Region d has a Redis node and an application, no database node."""
    groups = data["all"]["children"]
    redis_c = groups["redis"]["hosts"]["redis-c"]
    groups["redis"]["hosts"]["redis-d"] = dict(redis_c, dr_region="d")
    groups["app"]["hosts"]["app-d"] = dict(groups["app"]["hosts"]["app-c"], dr_region="d")


FAILBACK_WRONG_INPUT = {
    # case: (extra vars over from_region=b to_region=a, the parameter named, what the message must say)
    "unknown region": ({"to_region": "z"}, "to_region", "'z' is not a region of the inventory"),
    "unknown serving region": ({"from_region": "nowhere"}, "from_region", "(dr_region of its hosts: a, b, c"),
    "the same region twice": ({"from_region": "a"}, "to_region", "the region being left"),
    "a region with no database node": ({"to_region": "d"}, "to_region", "has no single postgres node"),
    "negative grace": ({"grace_seconds": -1}, "grace_seconds", "below the minimum 0"),
    "huge grace": ({"grace_seconds": 10**12}, "grace_seconds", "above the maximum 604800"),
    "infinite grace": ({"grace_seconds": float("inf")}, "grace_seconds", "not a finite number"),
    "no grace interval": ({"grace_interval": 0}, "grace_interval", "below the minimum 0.05"),
    "negative grace wait": ({"grace_wait": -5}, "grace_wait", "below the minimum 0"),
    "allow_reclone as a string": ({"allow_reclone": "only if needed"}, "allow_reclone", "must be a bool: got str"),
    "allow_reclone as a list": ({"allow_reclone": ["true"]}, "allow_reclone", "must be a bool: got list"),
    "a boolean for a number": ({"catchup_timeout": True}, "catchup_timeout", "from 1 to 3600: got bool"),
}


@pytest.mark.parametrize("case", sorted(FAILBACK_WRONG_INPUT))
def test_failback_refuses_wrong_input_naming_the_parameter_before_anything_runs(trust_lab, case):
    given, parameter, says = FAILBACK_WRONG_INPUT[case]
    inventory = trust_lab["inventory"]
    if case == "a region with no database node":
        from runbook_helpers import inventory_copy

        inventory = str(inventory_copy(trust_lab["cfg"], "region-without-database", _region_without_database))
    before = left_behind(trust_lab)
    with pytest.raises(ParameterError) as caught:
        erlmcp_dr.run("failback", inventory=inventory, extravars={"from_region": "b", "to_region": "a", **given})
    assert caught.value.parameter == parameter, caught.value
    assert says in str(caught.value), caught.value
    assert left_behind(trust_lab) == before


@pytest.mark.parametrize("parameter", ["incident_id", "residency_override"])
def test_failback_takes_a_templated_text_parameter_as_a_literal_and_changes_nothing(trust_lab, marker, parameter):
    """A text parameter that passes its checks travels as data: the move starts, its gate refuses it (the lab's
    applications are not running here), and the value is recorded literally, never templated."""
    value = payload(marker) + " is a justification long enough"
    result = erlmcp_dr.run("failback", inventory=trust_lab["inventory"], extravars={
        "from_region": "b", "to_region": "a", parameter: value, "grace_seconds": 3600, "grace_wait": 0})
    outcome = result.facts["summary"]
    assert result.succeeded is False and outcome["details"]["failed_step"] == "grace", outcome["reason"]
    assert outcome["details"]["steps"][-1]["step"] == "grace"
    assert outcome["point_of_no_return_passed"] is False and outcome["did"] == ["nothing was changed"]
    assert_no_trace(marker, result.to_json(), folders=(Path(result.run_dir),))
    if parameter == "incident_id":
        assert outcome["details"]["incident_id"] == value

"""A forked run reads again only the Ansible settings that can differ from the zygote's
(zygote.refresh_ansible_settings, issue 19), and ends with every setting as a full re-read gives it: a run whose
environment differs (a per-run variable, a secret-named one the key leaves out, one a templated default names) or
whose working directory differs (a relative path) sees its own values."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from erlmcp_dr.warm import zygote

# In a fresh interpreter (a zygote): its settings read at ansible.constants' import from its start environment; then
# the run's environment and working directory; then the partial refresh, compared with a full read of every setting
# (each in order, as ansible.constants' import does).
CHILD = """
import json, os, sys
from erlmcp_dr.warm import zygote

start_env, start_cwd = dict(os.environ), os.getcwd()
from ansible import constants as C

definitions = C.config.get_configuration_definitions()
report = {"unchanged_run": zygote.refresh_ansible_settings(dict(os.environ), start_env, start_cwd)}
for name, value in json.loads(sys.argv[1]).items():
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
os.chdir(sys.argv[2])
report["read"] = zygote.refresh_ansible_settings(dict(start_env), start_env, start_cwd)
report["partial"] = {name: repr(getattr(C, name)) for name in definitions}
for name in definitions:
    C.set_constant(name, C.config.get_config_value(name, variables=vars(C)))
report["full"] = {name: repr(getattr(C, name)) for name in definitions}
report["temporary"] = sorted(name for name, definition in definitions.items()
                             if str(definition.get("type") or "").lower() in zygote.TEMP_TYPES)
print(json.dumps(report))
"""


def _child(start_env: dict, run_changes: dict, run_cwd: str, start_cwd: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(run_changes), run_cwd], env=start_env,
                          cwd=start_cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def _same_but_temporary(report: dict) -> None:
    """The partial refresh left every setting as a full read gives it (the temporary folder aside: a new one each
    read)."""
    assert {name: value for name, value in report["partial"].items() if name not in report["temporary"]} == \
        {name: value for name, value in report["full"].items() if name not in report["temporary"]}
    assert set(report["read"]) < set(report["full"])


def test_a_run_reads_again_what_differs_and_ends_as_a_full_read(tmp_path):
    start = {name: value for name, value in os.environ.items()
             if name not in ("ANSIBLE_HOST_KEY_CHECKING", "ANSIBLE_CACHE_PLUGIN_CONNECTION", "ANSIBLE_HOME",
                             "ANSIBLE_INVENTORY")}
    start["ANSIBLE_TIMEOUT"] = "17"
    start["ANSIBLE_INVENTORY"] = "relative/hosts"  # resolved against the working directory
    (tmp_path / "zygote").mkdir()
    (tmp_path / "run").mkdir()
    zygote_dir, run_dir = str(tmp_path / "zygote"), str(tmp_path / "run")

    # The run's environment differs, in its zygote's working directory.
    changes = {"ANSIBLE_HOST_KEY_CHECKING": "False",  # secret-named: never in the key, may differ per run
               "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(tmp_path / "fact_cache"),  # per run (ansible-runner's)
               "ANSIBLE_HOME": str(tmp_path / "home"),  # named by the templated defaults (the plugin paths)
               "ANSIBLE_TIMEOUT": None}  # gone in the run: the default again
    report = _child(start, changes, zygote_dir, zygote_dir)
    # Nothing differs: only the temporary folder (each run's own) is read again.
    assert report["unchanged_run"] == report["temporary"] == ["DEFAULT_LOCAL_TMP"]
    partial = report["partial"]
    assert partial["HOST_KEY_CHECKING"] == "False"
    assert partial["CACHE_PLUGIN_CONNECTION"] == repr(str(tmp_path / "fact_cache"))
    assert partial["DEFAULT_TIMEOUT"] == "10"
    assert partial["DEFAULT_ACTION_PLUGIN_PATH"].startswith(repr([str(tmp_path / "home" / "plugins" / "action")])[:-1])
    assert partial["DEFAULT_HOST_LIST"] == repr([os.path.join(zygote_dir, "relative", "hosts")])
    _same_but_temporary(report)

    # The same environment, another working directory: a relative path resolves against the run's.
    report = _child(start, {}, run_dir, zygote_dir)
    assert report["partial"]["DEFAULT_HOST_LIST"] == repr([os.path.join(run_dir, "relative", "hosts")])
    assert "HOST_KEY_CHECKING" not in report["read"]
    _same_but_temporary(report)


def test_a_template_naming_anything_but_settings_and_constants_is_read_again():
    definitions = {"ANSIBLE_HOME": {}, "PLUGINS": {}}
    namespace = {"ANSIBLE_HOME": "/h", "REJECT_EXTS": [".pyc"]}
    assert not zygote._template_depends('{{ ANSIBLE_HOME ~ "/x:lookup" }}', definitions, namespace, set())
    assert zygote._template_depends('{{ ANSIBLE_HOME ~ "/x" }}', definitions, namespace, {"ANSIBLE_HOME"})
    assert not zygote._template_depends("{{ REJECT_EXTS + ['.orig'] }}", definitions, namespace, set())
    assert zygote._template_depends("{{ lookup('env', 'X') }}", definitions, namespace, set())
    assert not zygote._template_depends("/plain/{{ ANSIBLE_HOME }}", definitions, namespace, {"ANSIBLE_HOME"})

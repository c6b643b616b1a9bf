"""The zygote primes the plugins every ansible-playbook run loads (zygote.prime_plugin_config_definitions,
issue 19): after it, what the run's own loaders do before the first task (PlaybookExecutor.run's connection, shell
and become all(), the vars plugins, the enabled inventory plugins, the fact cache's plugin,
TaskQueueManager.load_callbacks' callbacks) parses no plugin documentation again, not even of a plugin that has no
settings (oneline, the ini inventory: ansible-core keeps nothing for those and reads them in every run), and every
file that went into those definitions is in the zygote's manifest, so an edit to one of them makes the zygote stale.
ansible-runner's awx_display callback is never imported by the zygote (it reads the run's environment)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from erlmcp_dr.warm import zygote

# In a fresh interpreter (what a zygote is), as the zygote's preload does it; then the run's own loads, with the
# loader's documentation parse counted, and the files the manifest would list. ANSIBLE_CALLBACK_PLUGINS names a
# folder with a callback of the runner's kind (not a builtin): the run's callback_loader.all() finds it there.
CHILD = """
import json, sys
from ansible.plugins import loader as plugin_loader
from ansible.plugins.loader import init_plugin_loader
from erlmcp_dr.warm import fingerprint, zygote

init_plugin_loader()
zygote.prime_plugin_config_definitions()
primed_modules = sorted(sys.modules)
parsed = []
original = plugin_loader.PluginLoader._load_config_defs
def counting(self, name, module, path):
    from ansible import constants as C
    from ansible.plugins.loader import get_plugin_class
    kind = get_plugin_class(self.class_name)
    if kind in C.CONFIGURABLE_PLUGINS and not C.config.has_configuration_definition(kind, name):
        parsed.append(path)  # the loader reads this plugin's documentation (ansible-core's own test)
    return original(self, name, module, path)
plugin_loader.PluginLoader._load_config_defs = counting
from ansible import constants as C
for kind in zygote.PRIMED_LOADERS:  # as PlaybookExecutor.run does (and the variable manager, for vars)
    list(getattr(plugin_loader, kind + "_loader").all(class_only=True))
for name in C.INVENTORY_ENABLED:  # as the inventory manager does
    plugin_loader.inventory_loader.get(name)
plugin_loader.cache_loader.get(C.CACHE_PLUGIN)  # as the fact cache does
callbacks = [plugin.ansible_name for plugin in plugin_loader.callback_loader.all(class_only=True)]
print(json.dumps({"parsed_in_run": parsed, "callbacks": callbacks, "files": fingerprint.loaded_files(),
                  "runner_callback_primed": "site_runner_callback" in " ".join(primed_modules)}))
"""

RUNNER_LIKE_CALLBACK = '''
DOCUMENTATION = """
name: site_runner_callback
type: stdout
short_description: a callback outside ansible-core, as ansible-runner's awx_display is
description: [test fixture]
options:
  verbosity_note:
    description: a setting, so that the plugin has definitions to register
    default: quiet
    env: [{name: SITE_RUNNER_CALLBACK_NOTE}]
"""
from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "site_runner_callback"
'''


def _prime_then_load_as_a_run(tmp_path: Path) -> dict:
    callbacks = tmp_path / "callbacks"
    callbacks.mkdir()
    (callbacks / "site_runner_callback.py").write_text(RUNNER_LIKE_CALLBACK)
    env = {name: value for name, value in os.environ.items() if not name.startswith("ANSIBLE_")}
    env.update(ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), ANSIBLE_CALLBACK_PLUGINS=str(callbacks))
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True, env=env,
                          cwd=str(tmp_path), timeout=300)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_primed_zygote_leaves_a_run_no_plugin_documentation_to_parse_but_the_runners_callback(tmp_path):
    seen = _prime_then_load_as_a_run(tmp_path)
    # the run's loads found every builtin connection, shell, become and callback plugin primed; only the callback
    # outside ansible-core (awx_display's place) was read in the run, as a cold run reads it
    assert [os.path.basename(path) for path in seen["parsed_in_run"]] == ["site_runner_callback.py"]
    assert not seen["runner_callback_primed"]
    assert {"ansible.builtin.default", "ansible.builtin.minimal", "site_runner_callback"} <= set(seen["callbacks"])
    # every plugin primed is a file in the manifest, with the doc fragments its settings came from
    files = seen["files"]
    for kind in (*zygote.PRIMED_LOADERS, "callback"):
        assert any(f"/ansible/plugins/{kind}/" in path for path in files), kind
    assert any(path.endswith("/ansible/plugins/connection/ssh.py") for path in files)
    assert any("/ansible/plugins/doc_fragments/" in path for path in files)


def test_a_plugin_recorded_as_settingless_answers_every_settings_lookup_as_before(tmp_path):
    """oneline (no settings) and minimal (settings from a doc fragment): the same definitions and options after the
    zygote's priming as after ansible-core's own loading."""
    child = """
import json, sys
from ansible import constants as C
from ansible.plugins import loader as plugin_loader
from ansible.plugins.loader import init_plugin_loader
from erlmcp_dr.warm import zygote
init_plugin_loader()
if sys.argv[1] == "primed":
    zygote.prime_plugin_config_definitions()
answers = {}
for name in ("oneline", "minimal", "ini"):
    kind = "inventory" if name == "ini" else "callback"
    getattr(plugin_loader, kind + "_loader").get(name, class_only=True)
    answers[name] = [sorted(C.config.get_configuration_definitions(kind, name)),
                     sorted(C.config.get_plugin_options(kind, name)),
                     C.config.get_plugin_options_from_var(kind, name, "x")]
print(json.dumps(answers))
"""
    env = {name: value for name, value in os.environ.items() if not name.startswith("ANSIBLE_")}
    env.update(ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"))
    answers = [json.loads(subprocess.run([sys.executable, "-c", child, how], capture_output=True, text=True, check=True,
                                         env=env, cwd=str(tmp_path), timeout=300).stdout.strip().splitlines()[-1])
               for how in ("shipped", "primed")]
    assert answers[0] == answers[1]
    assert answers[0]["oneline"] == [[], [], []] and answers[0]["minimal"][0]  # minimal has settings to compare


def test_the_builtin_callbacks_are_ansible_cores_own_files_only(tmp_path):
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "minimal.py").write_text("")
    (tmp_path / "notes.txt").write_text("")
    assert zygote.builtin_callback_names(str(tmp_path)) == ["minimal"]

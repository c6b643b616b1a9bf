"""The warm start never serves a run with older code or settings, and survives its zygote's crash (issue 19).

Real runs through erlmcp_dr.run on localhost (no lab): a one-task fixture runbook whose action plugin (beside the
playbook) reports what the run's worker sees: a library module's value (that module preloaded by the zygote with
ERLMCP_DR_WARM_PRELOAD, as a site's plugin library would be), an environment variable, an inventory variable, an
Ansible setting, and its own command line (a warm run's worker carries "[warm run <private dir>]"). Every wait is a
poll with a deadline; each test stops the zygotes it started (by pid, through client.stop).
"""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import erlmcp_dr
from erlmcp_dr.paths import ensure_collection_importable
from erlmcp_dr.warm import client

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for  # noqa: E402

pytestmark = pytest.mark.integration
DEADLINE = 60  # a hang guard, never a timing assertion

PLAYBOOK = """\
- name: Warm probe
  hosts: localhost
  gather_facts: false
  vars:
    runbook:
      title: Warm probe
      summary: Reports what the run's worker sees.
      confirm: false
      parameters: {}
  tasks:
    - name: Probe the run
      warm_probe:
      register: probe

    - name: Publish what it saw
      ansible.builtin.set_stats:
        data:
          probe: "{{ probe }}"
"""

ACTION_PLUGIN = """\
import gc
import os

import warm_probe_library
from ansible import constants as C
from ansible._internal._templating._jinja_bits import AnsibleEnvironment
from erlmcp_dr.warm import template_code_cache


def missing_collection_texts():
    # The collection's templates and conditionals that this worker's template cache does not hold (None: no cache,
    # or no collection found).
    folders = template_code_cache.collection_folders()
    if AnsibleEnvironment.compile.__module__ != template_code_cache.__name__ or not folders:
        return None
    templates, conditionals = template_code_cache.collection_texts(folders)
    cached = template_code_cache.cached_texts()
    return ([text for text in templates if ("template", text) not in cached]
            + [text for text in conditionals if ("expression", text) not in cached])
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    def run(self, tmp=None, task_vars=None):
        if os.environ.get("WARM_PROBE_FAIL"):
            return {"failed": True, "msg": "the probe failed, as asked"}
        with open("/proc/self/cmdline", "rb") as handle:
            cmdline = handle.read().replace(b"\\0", b" ").decode()
        return {"changed": False, "library": warm_probe_library.VALUE, "env": os.environ.get("WARM_PROBE_ENV"),
                "inventory": task_vars.get("probe_var"), "forks": C.DEFAULT_FORKS, "cmdline": cmdline,
                "host_key_checking": C.HOST_KEY_CHECKING, "fact_cache": C.CACHE_PLUGIN_CONNECTION,
                "fact_cache_env": os.environ.get("ANSIBLE_CACHE_PLUGIN_CONNECTION"),
                "frozen_objects": gc.get_freeze_count(), "compile": AnsibleEnvironment.compile.__module__,
                "missing_collection_texts": missing_collection_texts()}
"""


@pytest.fixture
def probe(tmp_path, monkeypatch) -> Iterator[dict[str, Path]]:
    books = tmp_path / "books"
    (books / "action_plugins").mkdir(parents=True)
    (books / "warm_probe.yml").write_text(PLAYBOOK)
    (books / "action_plugins" / "warm_probe.py").write_text(ACTION_PLUGIN)
    library = tmp_path / "lib"
    library.mkdir()
    (library / "warm_probe_library.py").write_text("VALUE = 'first'\n")
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={os.sys.executable} "
                         "probe_var=one\n")
    warm_dir = Path(tempfile.mkdtemp(prefix="erlmcp-dr-wz-", dir="/tmp"))  # a socket path must be short
    monkeypatch.setenv("ERLMCP_DR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ERLMCP_DR_PLAYBOOKS", str(books))
    monkeypatch.setenv("ERLMCP_DR_WARM", "1")
    monkeypatch.setenv("ERLMCP_DR_WARM_DIR", str(warm_dir))
    monkeypatch.setenv("ERLMCP_DR_WARM_PRELOAD", "warm_probe_library")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(library), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("WARM_PROBE_ENV", "alpha")
    monkeypatch.delenv("ANSIBLE_HOST_KEY_CHECKING", raising=False)
    try:
        yield {"inventory": inventory, "library": library / "warm_probe_library.py", "warm_dir": warm_dir}
    finally:
        for zygote in client.zygotes(str(warm_dir)):
            client.stop(zygote["socket"])
        for path in warm_dir.iterdir():
            path.unlink()
        warm_dir.rmdir()


def _probe(paths: dict[str, Path]) -> dict[str, Any]:
    result = erlmcp_dr.run("warm_probe", inventory=str(paths["inventory"]))
    assert result.succeeded, (result.error, [step.to_dict() for step in result.steps])
    return result.facts["probe"]


def _live_zygotes(paths: dict[str, Path]) -> list[int]:
    return sorted(zygote["pid"] for zygote in client.zygotes(str(paths["warm_dir"])) if zygote["alive"])


def _edited_in_place(path: Path, text: str) -> None:
    """Writes `text` (as long as what the file held: its size cannot tell) and moves its mtime a second on, so the
    edit does not depend on the file system's timestamp tick: only the mtime says the file changed."""
    assert len(text) == path.stat().st_size
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(path.stat().st_atime_ns, before + 1_000_000_000))


def test_a_warm_run_sees_a_changed_library_inventory_and_environment_and_survives_a_crashed_zygote(
        probe, monkeypatch, tmp_path):
    """Each change alone, each checked on the next run: a per-run environment variable, the Ansible settings the key
    leaves out (the run's fact cache, ANSIBLE_HOST_KEY_CHECKING: read again in the fork) and the inventory (the
    zygote never holds them: the same zygote serves), a module file the zygote loaded (its size, then only its
    mtime), and PYTHONPATH (it decided which file the zygote loaded: another zygote serves). Each step fails if its
    invalidation breaks: the stale zygote's preloaded module would answer."""
    monkeypatch.setenv("ANSIBLE_CACHE_PLUGIN_CONNECTION", str(tmp_path / "facts-first"))
    first = _probe(probe)
    assert "[warm run " in first["cmdline"], first["cmdline"]
    assert (first["library"], first["inventory"], first["env"]) == ("first", "one", "alpha")
    (zygote,) = _live_zygotes(probe)

    assert isinstance(first["host_key_checking"], bool) and first["fact_cache"] == first["fact_cache_env"]
    # What the zygote imported is outside the garbage collector's walks in the run's worker (gc.freeze), and its
    # templates compile through the shared cache (template_code_cache): both only on the warm path.
    assert first["frozen_objects"] > 10_000, first["frozen_objects"]
    assert first["compile"] == "erlmcp_dr.warm.template_code_cache"

    # The same zygote serves an unchanged run, and the run's own environment reaches it: a variable, and the Ansible
    # settings the zygote's key leaves out, read again from it (a fact cache's folder: ansible-runner's jsonfile
    # cache names one per run; the runbooks keep facts in memory, a site's own runner may not).
    monkeypatch.setenv("WARM_PROBE_ENV", "beta")
    monkeypatch.setenv("ANSIBLE_CACHE_PLUGIN_CONNECTION", str(tmp_path / "facts-again"))
    monkeypatch.setenv("ANSIBLE_HOST_KEY_CHECKING", str(not first["host_key_checking"]))  # runner: False if unset
    again = _probe(probe)
    assert "[warm run " in again["cmdline"] and again["env"] == "beta"
    assert again["host_key_checking"] is not first["host_key_checking"]
    assert again["fact_cache"] == again["fact_cache_env"] != first["fact_cache"]
    assert _live_zygotes(probe) == [zygote]
    monkeypatch.delenv("ANSIBLE_HOST_KEY_CHECKING")

    # The inventory alone: the run reads it from disk (the zygote never did), so the same zygote serves.
    probe["inventory"].write_text(probe["inventory"].read_text().replace("probe_var=one", "probe_var=two"))
    inventory = _probe(probe)
    assert "[warm run " in inventory["cmdline"] and inventory["inventory"] == "two"
    assert _live_zygotes(probe) == [zygote]

    # A file the zygote loaded changes (its size too): the next run sees it, from a fresh zygote; the stale one is
    # stopped.
    probe["library"].write_text("VALUE = 'second, changed'\n")
    changed = _probe(probe)
    assert "[warm run " in changed["cmdline"]
    assert (changed["library"], changed["inventory"]) == ("second, changed", "two")
    wait_for(lambda: zygote not in _live_zygotes(probe), DEADLINE, interval=0.1, what="the stale zygote to exit")
    (fresh,) = _live_zygotes(probe)

    # The same file edited to the same size: only its mtime tells, and that is enough.
    _edited_in_place(probe["library"], "VALUE = 'second, edited!'\n")
    edited = _probe(probe)
    assert "[warm run " in edited["cmdline"] and edited["library"] == "second, edited!"
    wait_for(lambda: fresh not in _live_zygotes(probe), DEADLINE, interval=0.1, what="the stale zygote to exit")
    (fresh,) = _live_zygotes(probe)

    # PYTHONPATH now finds the library elsewhere: nothing the zygote loaded changed on disk, but the environment that
    # decided what it loaded did, so another zygote (another key) serves.
    elsewhere = tmp_path / "lib-elsewhere"
    elsewhere.mkdir()
    (elsewhere / "warm_probe_library.py").write_text("VALUE = 'from elsewhere'\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(elsewhere), os.environ["PYTHONPATH"]]))
    moved = _probe(probe)
    assert "[warm run " in moved["cmdline"] and moved["library"] == "from elsewhere"
    (moved_zygote,) = [pid for pid in _live_zygotes(probe) if pid != fresh]

    # A crashed zygote (kill -9) is detected at the next run and replaced; that run is warm again.
    os.kill(moved_zygote, signal.SIGKILL)
    wait_for(lambda: moved_zygote not in _live_zygotes(probe), DEADLINE, interval=0.05, what="the zygote to die")
    after = _probe(probe)
    assert "[warm run " in after["cmdline"] and after["library"] == "from elsewhere"
    assert moved_zygote not in _live_zygotes(probe)
    assert len([z for z in client.zygotes(str(probe["warm_dir"])) if z["alive"] and z["pid"] != fresh]) == 1


def test_a_zygote_compiles_the_collections_templates_for_the_runs_it_forks(probe):
    """While it waits for runs, the playbook zygote compiles every template and conditional of the collection's
    playbooks and roles (template_code_cache): a run forked once it has finds each of them compiled. A text that does
    not compile would stay missing (an error in a runbook), as would a fill that stopped (the zygote's log says why)."""
    first = _probe(probe)
    assert first["missing_collection_texts"] is not None
    seen = {"missing": first["missing_collection_texts"]}

    def filled() -> bool:
        seen["missing"] = _probe(probe)["missing_collection_texts"]
        return seen["missing"] == []

    try:
        wait_for(filled, DEADLINE, interval=0.2, what="a run's worker to find the collection's texts compiled")
    except Exception as exc:
        raise AssertionError(f"still not compiled: {seen['missing'][:5]}") from exc
    assert len(_live_zygotes(probe)) == 1  # one zygote did it all, and served every probe


def test_an_ansible_setting_in_the_environment_gets_a_zygote_started_with_it(probe, monkeypatch, tmp_path):
    """The Ansible config file (edited to the same size: only its mtime tells) and an ANSIBLE_* variable: the
    zygote parsed both when it imported ansible-core, so each change needs another zygote, and the run sees it."""
    config = tmp_path / "ansible.cfg"
    config.write_text("[defaults]\nforks = 3\n")
    monkeypatch.setenv("ANSIBLE_CONFIG", str(config))
    assert _probe(probe)["forks"] == 3
    _edited_in_place(config, "[defaults]\nforks = 4\n")
    assert _probe(probe)["forks"] == 4
    monkeypatch.setenv("ANSIBLE_FORKS", "5")
    assert _probe(probe)["forks"] == 5
    assert len(_live_zygotes(probe)) == 3  # one per key: none serves another's settings


def test_warm_off_runs_cold_and_starts_no_zygote(probe, monkeypatch):
    monkeypatch.setenv("ERLMCP_DR_WARM", "0")
    cold = _probe(probe)
    assert "[warm run " not in cold["cmdline"] and "ansible-playbook" in cold["cmdline"]
    assert cold["frozen_objects"] == 0 and cold["compile"] == "jinja2.environment"
    assert cold["missing_collection_texts"] is None
    assert client.zygotes(str(probe["warm_dir"])) == []


def test_a_zygote_that_cannot_start_leaves_a_cold_run_that_says_so(probe, monkeypatch, caplog):
    monkeypatch.setenv("ERLMCP_DR_WARM_DIR", "/proc/erlmcp-dr-no-such-folder")  # cannot be made
    cold = _probe(probe)
    assert "[warm run " not in cold["cmdline"] and cold["library"] == "first"
    assert "started cold, without the warm start" in caplog.text, caplog.text


def test_a_failing_run_ends_the_same_warm_and_cold(probe, monkeypatch):
    """What ansible-runner sees of ansible-playbook (exit code, events into steps) is the same either way."""
    monkeypatch.setenv("WARM_PROBE_FAIL", "1")
    ended = {}
    for start in ("0", "1"):
        monkeypatch.setenv("ERLMCP_DR_WARM", start)
        result = erlmcp_dr.run("warm_probe", inventory=str(probe["inventory"]))
        ended[start] = (result.status, result.rc, [(step.task, step.status, step.message) for step in result.steps])
    assert ended["0"] == ended["1"]
    assert ended["1"][:2] == ("failed", 2)
    assert ("Probe the run", "failed", "the probe failed, as asked") in ended["1"][2]


"""Where the package finds the collection and keeps its state: in a checkout and installed from a wheel.

"Installed" is this checkout's package with checkout_root() answering None, as it does in
site-packages (tests/integration/test_wheel.py runs the real wheel).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from erlmcp_dr import paths

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    """No erlmcp.dr or Ansible settings from the caller; a working folder without ansible.cfg; HOME in tmp."""
    for name in ("ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_COLLECTIONS_PATHS", "ANSIBLE_CONFIG",
                 "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH", paths.COLLECTION_ENV, paths.HOME_ENV, paths.LAB_DIR_ENV,
                 "XDG_STATE_HOME"):
        monkeypatch.delenv(name, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    return tmp_path


@pytest.fixture
def installed(clean_env, monkeypatch):
    """The package as a wheel installs it: not in a checkout (sys.path restored afterwards)."""
    monkeypatch.setattr(paths, "checkout_root", lambda: None)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return clean_env


def make_installed_collection(base: Path) -> Path:
    """<base>/ansible_collections/erlmcp/dr as ansible-galaxy installs it: MANIFEST.json, no galaxy.yml."""
    root = base / "ansible_collections" / "erlmcp" / "dr"
    (root / "playbooks").mkdir(parents=True)
    (root / "MANIFEST.json").write_text('{"collection_info": {"namespace": "erlmcp", "name": "dr"}}\n')
    return root


def without_other_copies() -> list[str]:
    """sys.path less the entries holding an erlmcp.dr (this checkout's .collections, once a test imported it)."""
    return [p for p in sys.path if not (Path(p or ".") / "ansible_collections" / "erlmcp" / "dr").is_dir()]


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# ---------------------------------------------------------------- the collection


def test_in_a_checkout_the_collection_is_the_checkout(clean_env):
    assert paths.checkout_root() == REPO
    assert paths.collection_root() == REPO
    assert paths.collections_path() == REPO / ".collections"
    assert (REPO / ".collections" / "ansible_collections" / "erlmcp" / "dr" / "galaxy.yml").is_file()


def test_installed_collection_is_found_on_ansible_collections_path(installed, monkeypatch):
    root = make_installed_collection(installed / "colls")
    monkeypatch.setenv("ANSIBLE_COLLECTIONS_PATH", f"{installed / 'elsewhere'}:{installed / 'colls'}")
    before = tree(root)
    assert paths.collection_root() == root
    assert paths.collections_path() == installed / "colls"
    paths.ensure_collection_importable()
    assert tree(root) == before, "nothing is written into an installed collection"


def test_installed_collection_is_found_through_the_users_ansible_config(installed, monkeypatch):
    root = make_installed_collection(installed / "from-config")
    config = installed / "my-ansible.cfg"
    config.write_text(f"[defaults]\ncollections_path = {installed / 'from-config'}\n")
    monkeypatch.setenv("ANSIBLE_CONFIG", str(config))
    assert paths.collection_root() == root


def test_installed_collection_is_found_in_site_packages(installed, monkeypatch):
    """PyPI's `ansible` convention: ansible_collections/ on sys.path (site-packages), with no configuration."""
    site = installed / "site-packages"
    root = make_installed_collection(site)
    monkeypatch.setenv("ANSIBLE_COLLECTIONS_PATH", str(installed / "empty"))
    monkeypatch.setattr(sys, "path", [*without_other_copies(), str(site)])
    assert paths.collection_root() == root
    assert paths.collections_path() == site


def test_ansible_collections_path_wins_over_site_packages(installed, monkeypatch):
    """The copy ansible-playbook loads: configured paths come before sys.path, as in ansible-core."""
    site, configured = installed / "site-packages", installed / "configured"
    make_installed_collection(site)
    wanted = make_installed_collection(configured)
    monkeypatch.setenv("ANSIBLE_COLLECTIONS_PATH", str(configured))
    monkeypatch.setattr(sys, "path", [*sys.path, str(site)])
    assert paths.collection_root() == wanted


def test_a_galaxy_yml_without_manifest_is_a_collection_too(installed, monkeypatch):
    source = installed / "source"
    source.mkdir()
    (source / "galaxy.yml").write_text("namespace: erlmcp\nname: dr\n")
    monkeypatch.setenv(paths.COLLECTION_ENV, str(source))
    assert paths.collection_root() == source


def test_the_override_names_what_it_found(installed, monkeypatch):
    monkeypatch.setenv(paths.COLLECTION_ENV, str(installed / "nothing-here"))
    with pytest.raises(paths.CollectionNotFound) as caught:
        paths.collection_root()
    message = str(caught.value)
    assert "galaxy.yml or MANIFEST.json" in message and paths.COLLECTION_ENV in message


def test_no_collection_anywhere_lists_where_it_looked(installed, monkeypatch):
    monkeypatch.setenv("ANSIBLE_COLLECTIONS_PATH", str(installed / "nowhere"))
    monkeypatch.setattr(sys, "path", without_other_copies())
    with pytest.raises(paths.CollectionNotFound) as caught:
        paths.collection_root()
    message = str(caught.value)
    assert str(installed / "nowhere") in message
    assert paths.COLLECTION_ENV in message and "pip install erlmcp-dr" in message


def test_installed_collection_outside_the_ansible_layout_is_refused(installed, monkeypatch):
    loose = installed / "loose"
    loose.mkdir()
    (loose / "MANIFEST.json").write_text("{}\n")
    monkeypatch.setenv(paths.COLLECTION_ENV, str(loose))
    with pytest.raises(paths.CollectionNotFound, match="ansible_collections/erlmcp/dr"):
        paths.collections_path()
    assert tree(loose) == ["MANIFEST.json"]


# ---------------------------------------------------------------- the environment of a playbook run


def test_ansible_env_keeps_the_users_config_and_collections(installed, monkeypatch):
    make_installed_collection(installed / "site")
    config = installed / "user.cfg"
    config.write_text("[defaults]\n")
    monkeypatch.setenv("ANSIBLE_CONFIG", str(config))
    monkeypatch.setenv("ANSIBLE_COLLECTIONS_PATH", f"{installed / 'site'}:{installed / 'other'}")
    env = paths.ansible_env()
    assert env["ANSIBLE_CONFIG"] == str(config)
    assert env["ANSIBLE_COLLECTIONS_PATH"].split(os.pathsep) == [str(installed / "site"), str(installed / "other")]


def test_ansible_env_in_a_checkout_puts_the_link_first_and_uses_its_config(clean_env, monkeypatch):
    monkeypatch.setenv("ANSIBLE_COLLECTIONS_PATH", str(clean_env / "theirs"))
    env = paths.ansible_env()
    assert env["ANSIBLE_COLLECTIONS_PATH"].split(os.pathsep) == [str(REPO / ".collections"), str(clean_env / "theirs")]
    assert env["ANSIBLE_CONFIG"] == str(REPO / "ansible.cfg")


def test_ansible_env_without_a_checkout_or_a_user_config_sets_no_config(installed, monkeypatch):
    make_installed_collection(installed / "site")
    monkeypatch.setenv("ANSIBLE_COLLECTIONS_PATH", str(installed / "site"))
    assert "ANSIBLE_CONFIG" not in paths.ansible_env()


# ---------------------------------------------------------------- state


def test_state_home_in_a_checkout_is_runs(clean_env):
    assert paths.state_home() == REPO / ".runs"
    assert paths.lab_root() == REPO / ".lab"
    assert paths.default_inventory() == REPO / "inventories" / "lab"


def test_state_home_override(clean_env, monkeypatch):
    monkeypatch.setenv(paths.HOME_ENV, str(clean_env / "home"))
    assert paths.state_home() == clean_env / "home"


def test_installed_state_home_is_the_users_state_dir(installed, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(installed / "xdg"))
    assert paths.state_home() == installed / "xdg" / "erlmcp-dr"
    assert paths.lab_root() == installed / "xdg" / "erlmcp-dr" / "lab"
    assert paths.default_inventory() == installed / "xdg" / "erlmcp-dr" / "lab" / "inventory.yml"


def test_a_relative_xdg_state_home_is_ignored(installed, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")
    assert paths.state_home() == installed / "user" / ".local" / "state" / "erlmcp-dr"


def test_installed_lab_follows_the_state_home_and_its_own_override(installed, monkeypatch):
    monkeypatch.setenv(paths.HOME_ENV, str(installed / "home"))
    assert paths.lab_root() == installed / "home" / "lab"
    assert paths.default_inventory() == installed / "home" / "lab" / "inventory.yml"
    monkeypatch.setenv(paths.LAB_DIR_ENV, str(installed / "mylab"))
    assert paths.lab_root() == installed / "mylab"
    assert paths.default_inventory() == installed / "mylab" / "inventory.yml"


# ---------------------------------------------------------------- the two settings, read without ansible-core

def _cfg(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


_SCENARIOS = {
    "defaults": ({}, None),
    "env paths, relative, ~ and $VAR": ({"ANSIBLE_COLLECTIONS_PATH": "rel/one:~/two:$EXTRA_DIR/three:/abs/./four/.."},
                                       None),
    "ansible home from env": ({"ANSIBLE_HOME": "~/elsewhere"}, None),
    "user config, relative to itself": ({}, ("user/.ansible.cfg",
                                           "[defaults]\ncollections_path = ./cols:{{CWD}}/here ; note\nhome = h\n")),
    "cwd config with home only and scan off": ({}, ("work/ansible.cfg",
                                                   "[defaults]\nhome = ../home\ncollections_scan_sys_path = no\n")),
    "ANSIBLE_CONFIG folder, DEFAULT section": ({"ANSIBLE_CONFIG": "../conf"}, (
        "conf/ansible.cfg", "[DEFAULT]\ncollections_path = /from/default\n[defaults]\n")),
    "env wins over the config file": ({"ANSIBLE_COLLECTIONS_PATH": "/env/path", "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH":
                                       " Yes "}, ("work/ansible.cfg", "[defaults]\ncollections_path = /cfg/path\n")),
    "a missing ANSIBLE_CONFIG falls through": ({"ANSIBLE_CONFIG": "/nowhere/ansible.cfg"}, (
        "user/.ansible.cfg", "[defaults]\ncollections_path = /from/user\n")),
}


@pytest.mark.parametrize("scenario", sorted(_SCENARIOS))
def test_the_settings_read_without_ansible_core_equal_its_config_managers(clean_env, monkeypatch, scenario):
    env, config = _SCENARIOS[scenario]
    monkeypatch.setenv("EXTRA_DIR", str(clean_env / "extra"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if config:
        _cfg(clean_env / config[0], config[1])
    plain = paths._plain_ansible_settings()
    assert plain is not None
    assert plain == paths._config_manager_settings()


@pytest.mark.parametrize("env,config", [
    ({"ANSIBLE_COLLECTIONS_PATH": ""}, None),  # empty
    ({}, "[defaults]\ncollections_path = '/quoted/path'\n"),  # ini quotes
    ({}, "[defaults]\ncollections_path = {{ ANSIBLE_HOME }}/x\n"),  # a template
    ({}, "[defaults\nbroken\n"),  # does not parse: ansible-playbook says why
    ({"ANSIBLE_CONFIG": "../conf.yml"}, None),  # a config file type only ansible-core judges
])
def test_what_only_ansible_core_reads_right_goes_to_its_config_manager(clean_env, monkeypatch, env, config):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if config:
        _cfg(clean_env / "work" / "ansible.cfg", config)
    if "ANSIBLE_CONFIG" in env:
        _cfg(clean_env / "conf.yml", "x: 1\n")
    assert paths._plain_ansible_settings() is None


def test_a_world_writable_working_folder_s_config_is_skipped_as_ansible_core_does(clean_env):
    _cfg(clean_env / "work" / "ansible.cfg", "[defaults]\ncollections_path = /from/cwd\n")
    os.chmod(clean_env / "work", 0o777)
    try:
        plain = paths._plain_ansible_settings()
        assert plain is not None and "/from/cwd" not in plain[0]
        assert plain == paths._config_manager_settings()
    finally:
        os.chmod(clean_env / "work", 0o755)

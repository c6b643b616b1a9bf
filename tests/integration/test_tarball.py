"""The collection tarball (`ansible-galaxy collection build`) ships the collection and nothing local.

Built from a copy of the checkout's files (what git tracks or would track) with the local
artifacts a working checkout has planted into it, so build_ignore is tested, not the state of
this checkout. The wheel's copy of the collection is this same tarball, unpacked (setup.py).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

# Everything at the top of the tarball, and the only files it may hold outside these folders.
# requirements.txt and bindep.txt ship: ansible-builder introspects them (meta/execution-environment.yml).
SHIPPED_TOP = {"CHANGELOG.md", "COLLECTION_README.md", "COPYING", "FILES.json", "MANIFEST.json",
               "bindep.txt", "changelogs", "meta", "playbooks", "plugins", "requirements.txt", "roles"}
SHIPPED_CHANGELOGS = {"changelogs/changelog.yaml", "changelogs/config.yaml"}
# What a working checkout has lying around (scripts/setup.sh, make test, pip, editors, earlier builds).
LOCAL_ARTIFACTS = [
    ".venv/bin/python", ".lab/pg/pg-a/PG_VERSION", ".runs/runs/x/result.json", ".build/bin/python3.11",
    ".collections/ansible_collections/erlmcp/README", ".ansible/tmp/x", ".pytest_cache/v/cache/lastfailed",
    ".ruff_cache/0.6/x", ".mypy_cache/x", ".tox/x", ".idea/workspace.xml", ".vscode/settings.json",
    "build/lib/erlmcp_dr/__init__.py", "dist/erlmcp_dr-0.1.0-py3-none-any.whl", "src/erlmcp_dr.egg-info/PKG-INFO",
    "erlmcp-dr-0.0.9.tar.gz", "plugins/modules/__pycache__/pg_fence.cpython-311.pyc", "plugins/modules/pg_fence.pyc",
    "playbooks/.inventory_probe.123.yaml", "playbooks/.database_switchover.yml.swp", "roles/pg_begin/tasks/main.yml~",
    "tests/output/junit.xml", "PKG-INFO", "setup.cfg",
    "changelogs/fragments/later.yml", "changelogs/.plugin-cache.yaml",
]


def tracked_files() -> list[str]:
    listing = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=REPO, check=True,
                             capture_output=True, text=True).stdout
    return [path for path in listing.split("\0") if path and (REPO / path).is_file()]


def copy_checkout(target: Path) -> list[str]:
    files = tracked_files()
    for path in files:
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / path, target / path)
    return files


def build_tarball(source: Path, out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "ansible.cli.galaxy", "collection", "build", "--output-path", str(out),
                    str(source)], check=True, capture_output=True, text=True)
    (tarball,) = out.glob("erlmcp-dr-*.tar.gz")
    return tarball


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    source = tmp_path_factory.mktemp("checkout")
    files = copy_checkout(source)
    for artifact in LOCAL_ARTIFACTS:
        (source / artifact).parent.mkdir(parents=True, exist_ok=True)
        (source / artifact).write_text("local\n")
    tarball = build_tarball(source, tmp_path_factory.mktemp("out"))
    with tarfile.open(tarball) as archive:
        members = {m.name: m for m in archive.getmembers()}
        manifest = json.load(archive.extractfile("MANIFEST.json"))
        readme = archive.extractfile(manifest["collection_info"]["readme"]).read().decode()
    return {"tarball": tarball, "members": members, "names": set(members), "tracked": set(files),
            "manifest": manifest, "readme": readme}


def test_ships_the_collection_content(built):
    names = built["names"]
    assert {name.split("/")[0] for name in names} == SHIPPED_TOP
    for folder in ("meta", "plugins", "roles", "playbooks"):
        wanted = {path for path in built["tracked"] if path.startswith(folder + "/")}
        assert wanted <= names, f"{folder}/ files missing from the tarball: {sorted(wanted - names)}"
    assert {name for name in names if name.startswith("changelogs/") and built["members"][name].isfile()} \
        == SHIPPED_CHANGELOGS


def test_ships_nothing_local(built):
    """Every file in it is one git tracks (or would), or one ansible-galaxy wrote: no artifact, cache or build."""
    files = {name for name, member in built["members"].items() if member.isfile()}
    generated = {"MANIFEST.json", "FILES.json"}
    assert files - generated <= built["tracked"], f"local files shipped: {sorted(files - generated - built['tracked'])}"
    planted = {artifact for artifact in LOCAL_ARTIFACTS if artifact in files}
    assert not planted
    for name in files:
        assert "__pycache__" not in name and not name.endswith((".pyc", "~", ".swp"))
        assert not any(part.startswith(".") for part in name.split("/")), name


def test_leaves_out_the_repositorys_own_material(built):
    top = {name.split("/")[0] for name in built["names"]}
    for developer_only in ("README.md", "docs", "tests", "src", "scripts", "inventories", "benchmarks", "runbooks",
                           "Makefile", "pyproject.toml", "setup.py", "MANIFEST.in", "ansible.cfg", ".gitignore"):
        assert developer_only not in top


def test_manifest_matches_galaxy_yml(built):
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    info = built["manifest"]["collection_info"]
    assert (info["namespace"], info["name"], info["version"]) == (galaxy["namespace"], galaxy["name"],
                                                                  galaxy["version"])
    assert info["readme"] == "COLLECTION_README.md"


def test_one_version_for_the_collection_the_wheel_and_the_package():
    import tomllib

    import erlmcp_dr

    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert galaxy["version"] == project["version"] == erlmcp_dr.__version__


def test_galaxy_readme_links_only_to_what_ships_and_states_the_requirements(built):
    readme = built["readme"]
    for target in re.findall(r"\]\(([^)#]+)", readme):
        assert target.startswith(("http://", "https://")) or target in built["names"], f"link to {target}"
    assert not re.search(r"\bmake (demo|test|lint|setup|bench)\b", readme), "make targets do not ship"
    for unshipped in ("docs/", "inventories/", "../shared", "scripts/", "tests/", "runbooks/"):
        assert unshipped not in readme, f"the Galaxy README mentions {unshipped!r}, which does not ship"
    runtime = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())
    low, high = re.fullmatch(r">=(\d+\.\d+)(?:\.0)?,<(\d+\.\d+)(?:\.0)?", runtime["requires_ansible"]).groups()
    assert f">={low},<{high}" in readme, "the README states requires_ansible's range"
    for needed in ("## Install", "## Requirements", "psycopg", "PostgreSQL 15", "ansible-playbook", "AWX",
                   "runbook "):
        assert needed in readme

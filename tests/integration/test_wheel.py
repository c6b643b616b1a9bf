"""`pip install erlmcp-dr` is the whole product: the wheel built from this repository, installed into a
fresh virtualenv, runs the lab and a switchover from a folder that is not the checkout.

The wheel is built from a copy of the checkout's files (pip builds in the source folder and would leave
build/ and *.egg-info in it). The virtualenv gets the wheel plus its PyPI dependencies (the pip cache
makes that quick). Everything the installed package writes goes to a state home of the test's own
($ERLMCP_DR_HOME, $XDG_STATE_HOME), its lab on ports of its own; the lab is stopped by PID at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
from runbook_helpers import port_range
from test_tarball import SHIPPED_TOP

from erlmcp_dr.lab import lifecycle as lab

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PIP_TIMEOUT = 600
RUN_TIMEOUT = 300
COLLECTION = ("ansible_collections", "erlmcp", "dr")
# The top of the wheel's collection: what ansible-galaxy's tarball holds (tests/integration/test_tarball.py).
COLLECTION_TOP = SHIPPED_TOP  # the wheel carries exactly what the Galaxy tarball ships


def run(cmd: list[str], *, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert done.returncode == 0, (f"{' '.join(cmd)} exited {done.returncode}\n"
                                  f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done


def checkout_copy(target: Path) -> Path:
    listing = run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=REPO, timeout=60).stdout
    for path in filter(None, listing.split("\0")):
        if (REPO / path).is_file():
            (target / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / path, target / path)
    return target


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = checkout_copy(tmp_path_factory.mktemp("source"))
    dist = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q", "-w", str(dist),
         str(source)], timeout=PIP_TIMEOUT)
    (built,) = dist.glob("erlmcp_dr-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    path = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", str(path)], timeout=PIP_TIMEOUT)
    run([str(path / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        timeout=PIP_TIMEOUT)
    return path


def site_collection(venv: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = run([str(venv / "bin" / "python"), "-c", code], timeout=60).stdout.strip()
    return Path(purelib).joinpath(*COLLECTION)


def files_of(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_the_wheel_holds_the_package_the_cli_and_the_collection(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")} \
        == {"erlmcp_dr", "ansible_collections"}
    prefix = "/".join(COLLECTION) + "/"
    assert {name[len(prefix):].split("/")[0] for name in names if name.startswith("ansible_collections/")} \
        == COLLECTION_TOP
    assert "runbook = erlmcp_dr.cli:main" in entry_points
    assert prefix + "plugins/modules/pg_promote.py" in names
    assert prefix + "galaxy.yml" not in names


def test_installed_from_the_wheel_outside_the_checkout(venv, tmp_path):
    collection = site_collection(venv)
    assert (collection / "MANIFEST.json").is_file()
    shipped = files_of(collection)
    home = Path(tempfile.mkdtemp(prefix="erlmcp-dr-wheel-home-"))  # not tmp_path: the lab's servers run as postgres
    home.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    port_base = lab.free_port_base(*port_range())
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("ANSIBLE_", "ERLMCP_DR_")) and key not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(
        PATH=os.pathsep.join([str(venv / "bin")] + [p for p in os.environ.get("PATH", os.defpath).split(os.pathsep)
                                                    if p and not p.startswith(str(REPO))]),
        ERLMCP_DR_HOME=str(home), XDG_STATE_HOME=str(home / "xdg"), ERLMCP_DR_LAB_PORT_BASE=str(port_base),
        # A user of its own: Ansible's default search path starts with ~/.ansible/collections, where a
        # collection installed with ansible-galaxy would rightly win over site-packages (as for ansible-playbook).
        HOME=str(home / "user"),
    )
    runbook = str(venv / "bin" / "runbook")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return run([runbook, *args], cwd=work, env=env, timeout=RUN_TIMEOUT)

    try:
        up = json.loads(cli("lab", "up", "--json").stdout)
        assert up["ok"], up
        assert (up["root"], up["primary"]) == (str(home / "lab"), "pg-a")
        inventory = home / "lab" / "inventory.yml"
        assert up["inventory"] == str(inventory) and inventory.is_file()

        listed = {entry["name"]: entry for entry in json.loads(cli("list", "--json").stdout)}
        assert {"database_switchover", "database_failover", "database_rejoin"} <= set(listed)
        assert Path(listed["database_switchover"]["path"]).parent == collection / "playbooks"

        plan = json.loads(cli("plan", "database_switchover", "-i", str(inventory), "-e", "candidate=pg-b",
                              "--json").stdout)
        assert plan["status"] == "successful" and plan["check"] is True, plan
        done = json.loads(cli("run", "database_switchover", "-i", str(inventory), "-e", "candidate=pg-b", "--yes",
                              "--json").stdout)
        assert done["status"] == "successful", done
        assert Path(done["run_dir"]).parent == home / "runs"

        status = json.loads(cli("lab", "status", "--json").stdout)
        assert status["ok"] and status["primary"] == "pg-b", status
        assert files_of(collection) == shipped, "the package wrote into the installed collection"
    finally:
        lab.down(lab.LabConfig(root=home / "lab", port_base=port_base))
        shutil.rmtree(home, ignore_errors=True)

"""`pip install erlmcp-dr` is the whole product: the wheel the README's build command (`python -m build`) makes from
this repository, installed into a fresh virtualenv, runs the lab and a switchover from a folder that is not the
checkout; its collection is the Galaxy tarball's, file for file; ansible-builder can introspect it once installed
(the way AWX builds an execution environment).

`python -m build` makes the sdist first and the wheel from the sdist, so MANIFEST.in decides what the wheel's
collection is built from (a wheel built straight from the folder, as `pip wheel .` does, cannot see a file missing
from MANIFEST.in). It builds from a copy of the checkout's files, so nothing is left in the checkout. One build
serves every test here. The virtualenv gets the wheel plus its PyPI dependencies (the pip cache makes that
quick). Everything the installed package writes goes to a state home of the test's own ($ERLMCP_DR_HOME,
$XDG_STATE_HOME), its lab on ports of its own; the lab is stopped by PID at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest
import yaml
from runbook_helpers import VENV_BIN, port_range
from test_tarball import SHIPPED_TOP, build_tarball, copy_checkout

from erlmcp_dr.lab import lifecycle as lab

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PIP_TIMEOUT = 600
RUN_TIMEOUT = 300
COLLECTION = ("ansible_collections", "erlmcp", "dr")
COLLECTION_PREFIX = "/".join(COLLECTION) + "/"
# The top of the wheel's collection: what ansible-galaxy's tarball holds (tests/integration/test_tarball.py).
COLLECTION_TOP = SHIPPED_TOP  # the wheel carries exactly what the Galaxy tarball ships


def run(cmd: list[str], *, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert done.returncode == 0, (f"{' '.join(cmd)} exited {done.returncode}\n"
                                  f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    source = tmp_path_factory.mktemp("source")
    copy_checkout(source)
    dist = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", str(dist), str(source)], timeout=PIP_TIMEOUT)
    (wheel,) = dist.glob("erlmcp_dr-*.whl")
    return {"wheel": wheel, "tarball": build_tarball(source, tmp_path_factory.mktemp("galaxy"))}


@pytest.fixture(scope="module")
def wheel(built: dict[str, Path]) -> Path:
    return built["wheel"]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    path = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", str(path)], timeout=PIP_TIMEOUT)
    run([str(path / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        timeout=PIP_TIMEOUT)
    return path


def site_packages(venv: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(run([str(venv / "bin" / "python"), "-c", code], timeout=60).stdout.strip())


def site_collection(venv: Path) -> Path:
    return site_packages(venv).joinpath(*COLLECTION)


def files_of(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_the_wheel_holds_the_package_the_cli_and_the_collection(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")} \
        == {"erlmcp_dr", "ansible_collections"}
    prefix = COLLECTION_PREFIX
    assert {name[len(prefix):].split("/")[0] for name in names if name.startswith("ansible_collections/")} \
        == COLLECTION_TOP
    assert "runbook = erlmcp_dr.launch:main" in entry_points  # the warm CLI's launcher (docs/speed-warm.md)
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


def test_the_wheel_carries_the_galaxy_tarballs_collection(built):
    with zipfile.ZipFile(built["wheel"]) as wheel:
        in_wheel = {name[len(COLLECTION_PREFIX):] for name in wheel.namelist() if name.startswith(COLLECTION_PREFIX)}
    with tarfile.open(built["tarball"]) as tarball:
        in_tarball = {member.name for member in tarball.getmembers() if member.isfile()}
    assert {"requirements.txt", "bindep.txt", "meta/execution-environment.yml"} <= in_wheel
    assert in_wheel == in_tarball, (f"only in the tarball: {sorted(in_tarball - in_wheel)}; "
                                    f"only in the wheel: {sorted(in_wheel - in_tarball)} (MANIFEST.in?)")


def test_ansible_builder_introspects_the_installed_collection(venv):
    done = run([str(VENV_BIN / "ansible-builder"), "introspect", str(site_packages(venv))], timeout=RUN_TIMEOUT)
    found = yaml.safe_load(done.stdout)
    python = {line.split("#")[0].strip() for line in found["python"] if line.endswith("from collection erlmcp.dr")}
    system = {line.split("#")[0].strip() for line in found["system"] if line.endswith("from collection erlmcp.dr")}
    assert python == set(requirement_lines(REPO / "requirements.txt")), found
    assert system == set(requirement_lines(REPO / "bindep.txt")), found


def requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]

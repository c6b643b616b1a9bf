"""The README's build command, `python -m build`, makes a wheel whose collection is the Galaxy tarball's, file
for file, and that ansible-builder can introspect once installed (the way AWX builds an execution environment).

`python -m build` makes the sdist first and the wheel from the sdist, so MANIFEST.in decides what the wheel's
collection is built from; `pip wheel .` (tests/integration/test_wheel.py) builds from the folder and cannot see a
file missing from MANIFEST.in. Cost: one isolated build (~20 s) and a `pip install --no-deps --target` (no
virtualenv, no dependencies): the installed layout is all ansible-builder reads.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml
from runbook_helpers import VENV_BIN
from test_tarball import build_tarball, copy_checkout

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
COLLECTION_PREFIX = "ansible_collections/erlmcp/dr/"
TIMEOUT = 600


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, check=False, **kwargs)
    assert done.returncode == 0, f"{' '.join(cmd)}: rc {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    source = tmp_path_factory.mktemp("checkout")
    copy_checkout(source)
    dist = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", str(dist), str(source)])
    (wheel,) = dist.glob("erlmcp_dr-*.whl")
    tarball = build_tarball(source, tmp_path_factory.mktemp("galaxy"))
    return {"wheel": wheel, "tarball": tarball, "site": tmp_path_factory.mktemp("site")}


def test_the_wheel_from_python_m_build_carries_the_galaxy_tarballs_collection(built):
    with zipfile.ZipFile(built["wheel"]) as wheel:
        in_wheel = {name[len(COLLECTION_PREFIX):] for name in wheel.namelist() if name.startswith(COLLECTION_PREFIX)}
    with tarfile.open(built["tarball"]) as tarball:
        in_tarball = {member.name for member in tarball.getmembers() if member.isfile()}
    assert {"requirements.txt", "bindep.txt", "meta/execution-environment.yml"} <= in_wheel
    assert in_wheel == in_tarball, (f"only in the tarball: {sorted(in_tarball - in_wheel)}; "
                                    f"only in the wheel: {sorted(in_wheel - in_tarball)} (MANIFEST.in?)")


def test_ansible_builder_introspects_the_installed_collection(built):
    site = built["site"]
    run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check", "--target",
         str(site), str(built["wheel"])])
    done = run([str(VENV_BIN / "ansible-builder"), "introspect", str(site)])
    found = yaml.safe_load(done.stdout)
    python = {line.split("#")[0].strip() for line in found["python"] if line.endswith("from collection erlmcp.dr")}
    system = {line.split("#")[0].strip() for line in found["system"] if line.endswith("from collection erlmcp.dr")}
    assert python == set(requirement_lines(REPO / "requirements.txt")), found
    assert system == set(requirement_lines(REPO / "bindep.txt")), found


def requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]

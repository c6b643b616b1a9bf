"""The execution environment's inputs: what `ansible-builder` finds and the build context it writes.

Issue 9 row 4: an EE built from the collection lacked psycopg. These build the collection
tarball, install it, and ask ansible-builder itself (introspect, create), as AWX's EE builds do.
`make ee` (scripts/ee.sh) builds the image with podman and runs a plan inside it; it is not run here.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest
import yaml
from runbook_helpers import VENV_BIN

REPO = Path(__file__).resolve().parents[2]
TARBALL = ".build/ee/erlmcp-dr.tar.gz"  # where execution-environment.yml takes the collection from
# third-party import name -> the requirements.txt distribution that provides it
DISTRIBUTIONS = {"psycopg": "psycopg[binary]", "redis": "redis", "dns": "dnspython", "boto3": "boto3",
                 "botocore": "boto3",
                 "etcd3gw": "etcd3gw", "requests": "etcd3gw"}  # botocore comes with boto3, requests with etcd3gw
# ansible-core's own dependencies: wherever a plugin runs, ansible-core brought them (jinja2: notify's templates;
# cryptography: readiness reads the public endpoints' certificates).
WITH_ANSIBLE_CORE = {"ansible", "ansible_collections", "jinja2", "yaml", "cryptography"}
# The project's own controller package: erlmcp.dr.composed_run imports it on use. The EE installs its wheel without
# dependencies (execution-environment.yml), so it is not a requirements.txt line; its own dependencies must all be in
# the image already (test_the_controller_package_needs_nothing_the_image_lacks).
OWN_PACKAGE = {"erlmcp_dr"}
# What the EE installs besides requirements.txt: ansible-core and ansible-runner (execution-environment.yml), and
# what they bring (PyYAML with ansible-core, pexpect with ansible-runner).
EE_BASE_DISTRIBUTIONS = {"ansible-core", "ansible-runner", "PyYAML", "pexpect"}


def tool(*args: str, cwd: Path = REPO) -> str:
    proc = subprocess.run([str(VENV_BIN / args[0]), *args[1:]], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, f"{' '.join(args)}: rc {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The collection tarball, where execution-environment.yml expects it, beside a copy of that file."""
    top = tmp_path_factory.mktemp("ee")
    out = top / ".build" / "ee"
    tool("ansible-galaxy", "collection", "build", "--force", "--output-path", str(out))
    built = next(out.glob("erlmcp-dr-*.tar.gz"))
    built.rename(out / "erlmcp-dr.tar.gz")
    (out / "wheel").mkdir()  # where scripts/ee.sh puts the controller package's wheel; `create` only copies it
    shutil.copy(REPO / "execution-environment.yml", top / "execution-environment.yml")
    return top / TARBALL


def third_party_imports(top: Path = REPO / "plugins") -> set[str]:
    """Top-level names the Python under `top` imports that are neither stdlib nor Ansible."""
    names: set[str] = set()
    for path in top.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    # The guards' holder processes run a module_utils file as a script, which imports its sibling by its bare name.
    siblings = {path.stem for path in (REPO / "plugins" / "module_utils").rglob("*.py")}
    known = WITH_ANSIBLE_CORE | OWN_PACKAGE | {"__future__"}
    return {n for n in names if n not in sys.stdlib_module_names and n not in known and n not in siblings}


def requirement_lines(path: Path) -> list[str]:
    return [line.split("#")[0].strip() for line in path.read_text().splitlines() if line.split("#")[0].strip()]


def test_requirements_txt_lists_exactly_what_the_plugins_import() -> None:
    imported = third_party_imports()
    unknown = imported - DISTRIBUTIONS.keys()
    assert not unknown, f"plugins import {sorted(unknown)}: add them to requirements.txt and to DISTRIBUTIONS here"
    listed = {line.split(">")[0].split("<")[0].split("=")[0].strip() for line in requirement_lines(
        REPO / "requirements.txt")}
    assert listed == {DISTRIBUTIONS[name] for name in imported}, (
        f"requirements.txt lists {sorted(listed)}; the plugins import {sorted(imported)}")


def distribution_name(requirement: str) -> str:
    name = requirement
    for mark in "<>=![;":
        name = name.split(mark)[0]
    return name.strip()


def test_the_controller_package_needs_nothing_the_image_lacks() -> None:
    """The wheel goes in with --no-deps: each of its dependencies, and each import of its code, is in the EE."""
    listed = {distribution_name(line) for line in requirement_lines(REPO / "requirements.txt")}
    in_image = EE_BASE_DISTRIBUTIONS | listed
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {distribution_name(requirement) for requirement in project["dependencies"]}
    assert declared <= in_image, f"erlmcp-dr depends on {sorted(declared - in_image)}, which the EE does not install"
    provided = {name for name, dist in DISTRIBUTIONS.items() if distribution_name(dist) in in_image}
    imported = third_party_imports(REPO / "src" / "erlmcp_dr") - {"ansible_runner", "pexpect"}
    assert imported <= provided, f"erlmcp_dr imports {sorted(imported - provided)}, which the EE does not install"


def test_introspect_finds_the_python_and_system_dependencies(tarball: Path, tmp_path: Path) -> None:
    tool("ansible-galaxy", "collection", "install", "--force", str(tarball), "--collections-path", str(tmp_path))
    found = yaml.safe_load(tool("ansible-builder", "introspect", str(tmp_path)).split("\n", 1)[1])
    python = [line.split("#")[0].strip() for line in found["python"]]
    system = [line.split("#")[0].strip() for line in found["system"]]
    assert python == requirement_lines(REPO / "requirements.txt"), found
    assert "postgresql-15 [platform:dpkg]" in system, found


def test_create_writes_a_context_that_installs_the_collection_on_the_local_base(tarball: Path) -> None:
    top = tarball.parents[2]
    tool("ansible-builder", "create", "--file", "execution-environment.yml", "--context", "context", cwd=top)
    context = top / "context"
    containerfile = (context / "Containerfile").read_text()
    assert 'ARG EE_BASE_IMAGE="localhost/erlmcp-dr/debian-base:bookworm"' in containerfile
    assert 'ARG PKGMGR="/usr/local/bin/pkgmgr"' in containerfile
    assert 'ARG PYCMD="/opt/venv/bin/python3"' in containerfile  # the base image's virtualenv
    assert "ansible-core>=2.19,<2.20" in containerfile
    assert "introspect.py introspect" in containerfile  # the installed collection's own dependencies
    # the controller package, from the wheel scripts/ee.sh builds, without dependencies
    assert "pip install --no-cache-dir --no-deps /tmp/erlmcp-dr-wheel/*.whl" in containerfile
    requirements = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    assert requirements == {"collections": [{"name": "/build/erlmcp-dr.tar.gz", "type": "file"}]}
    with tarfile.open(context / "_build" / "erlmcp-dr.tar.gz") as tar:
        members = set(tar.getnames())
    assert {"meta/execution-environment.yml", "requirements.txt", "bindep.txt", "MANIFEST.json"} <= members


# In CI (CI=true, scripts/test.sh) a machine without them fails here instead of skipping: CI must build the EE.
IN_CI = os.environ.get("CI", "").lower() in ("true", "1", "yes")
EE_TOOLS_MISSING = [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]


@pytest.mark.skipif(bool(EE_TOOLS_MISSING) and not IN_CI,
                    reason=f"{' '.join(EE_TOOLS_MISSING)} missing: scripts/setup.sh installs them (as root); "
                           "CI=true fails instead")
def test_make_ee_builds_the_image_and_runs_a_plan_inside_it() -> None:
    """scripts/ee.sh end to end: the image builds and database_switchover --check succeeds in it.

    In CI: a cold run takes 4-5 min on the 2-core machine (debootstrap and the EE build), a warm one
    ~70 s (cached rootfs tarball and base image; the stages from the collection tarball on rebuild);
    the whole CI (~10 min) stays far below 30 min, so CI runs it wherever podman is installed.
    """
    assert not EE_TOOLS_MISSING, (f"CI=true and {' '.join(EE_TOOLS_MISSING)} not installed: "
                                  "scripts/setup.sh installs them (as root)")
    env = {**os.environ, "PATH": os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", os.defpath)])}
    proc = subprocess.run(["bash", "scripts/ee.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=1800, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "plan inside the image: rc 0" in proc.stderr, proc.stderr
    assert "controller package inside the image: rc 0" in proc.stderr, proc.stderr
    shown = (REPO / ".build" / "ee" / "controller.log").read_text()
    assert "regional_failover" in shown and "dns" in shown, shown[-3000:]
    recap = (REPO / ".build" / "ee" / "plan.log").read_text()
    assert "failed=0" in recap and "unreachable=0" in recap, recap[-3000:]

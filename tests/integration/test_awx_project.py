"""A runbook run the way AWX runs it: a project synced from git, then `transmit | worker | process`.

AWX's project sync clones the repository and, from the clone's root, installs
collections/requirements.yml into a cache that every job gets on ANSIBLE_COLLECTIONS_PATH
(awx/playbooks/project_update.yml). A job is a private data dir (project/, inventory/,
env/extravars, requirements_collections/) streamed by `ansible-runner transmit` to a worker
(`ansible-runner worker`, receptor's work unit) whose event stream `ansible-runner process`
turns back into artifacts. Nothing of this checkout's set-up (.collections, ANSIBLE_CONFIG,
ANSIBLE_COLLECTIONS_PATH) reaches the job: only what a clean clone carries.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from runbook_helpers import CLI_HANG_GUARD, VENV_BIN, inventory_path, new_lab, topology

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = "playbooks/database_switchover.yml"
IDENT = "awx-job-1"  # AWX names a job's artifacts after the job id


def clean_env() -> dict[str, str]:
    """The environment of an AWX job: no ANSIBLE_* of this checkout, the tools of this virtualenv on PATH."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env["PATH"] = os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", os.defpath)])
    return env


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env={**clean_env(), **(env or {})}, capture_output=True, text=True,
                          timeout=CLI_HANG_GUARD, check=False)


@pytest.fixture()
def job_dirs() -> Iterator[tuple[Path, Path]]:
    """(the job's private data dir on the controller, the worker's private data dir)."""
    top = Path(tempfile.mkdtemp(prefix="erlmcp-dr-awx-"))
    try:
        yield top / "job", top / "worker"
    finally:
        shutil.rmtree(top, ignore_errors=True)


def sync_project(job: Path) -> Path:
    """AWX's project sync: a clean clone of the committed tree, then collections/requirements.yml."""
    project = job / "project"
    clone = run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(project)], cwd=REPO)
    assert clone.returncode == 0, clone.stderr
    assert (project / "collections" / "requirements.yml").is_file(), "collections/requirements.yml is not committed"
    cache = job / "requirements_collections"
    # AWX sets the collections path to the cache alone: a copy of erlmcp.dr elsewhere (the EE's, the
    # user's ~/.ansible) must not make ansible-galaxy skip the install ("Nothing to do").
    galaxy = run([str(VENV_BIN / "ansible-galaxy"), "collection", "install", "-r", "collections/requirements.yml",
                  "--collections-path", str(cache)], cwd=project, env={"ANSIBLE_COLLECTIONS_PATH": str(cache)})
    assert galaxy.returncode == 0, galaxy.stdout + galaxy.stderr
    assert (cache / "ansible_collections" / "erlmcp" / "dr" / "MANIFEST.json").is_file(), galaxy.stdout
    return project


def write_job(job: Path, worker: Path, inventory: Path, extravars: dict[str, object], cmdline: str) -> None:
    """inventory/, env/extravars, env/envvars and env/cmdline as AWX writes them; paths as the worker sees them."""
    (job / "inventory").mkdir(parents=True)
    shutil.copy(inventory, job / "inventory" / "hosts.yml")
    env = job / "env"
    env.mkdir()
    (env / "extravars").write_text(yaml.safe_dump(extravars))
    (env / "cmdline").write_text(cmdline)  # a "Check" job type: --check
    (env / "envvars").write_text(yaml.safe_dump({"ANSIBLE_COLLECTIONS_PATH": str(worker / "requirements_collections")}))


def transmit_worker_process(job: Path, worker: Path) -> subprocess.CompletedProcess[str]:
    runner = str(VENV_BIN / "ansible-runner")
    pipeline = (f"{runner} transmit {job} -p {PLAYBOOK} --ident {IDENT}"
                f" | {runner} worker --private-data-dir {worker}"
                f" | {runner} process {job} --ident {IDENT}")
    return run(["bash", "-o", "pipefail", "-c", pipeline], cwd=job.parent)


def test_switchover_plan_from_a_clean_clone_through_transmit_worker_process(job_dirs: tuple[Path, Path]) -> None:
    job, worker = job_dirs
    job.mkdir()
    sync_project(job)
    with new_lab() as cfg:
        before = topology(cfg)
        write_job(job, worker, inventory_path(cfg), {"candidate": "pg-b"}, "--check")

        result = transmit_worker_process(job, worker)

        artifacts = job / "artifacts" / IDENT
        status = (artifacts / "status").read_text().strip() if (artifacts / "status").exists() else "(none)"
        stdout = (artifacts / "stdout").read_text() if (artifacts / "stdout").exists() else ""
        assert result.returncode == 0 and status == "successful", (
            f"rc {result.returncode}, status {status}\n{result.stderr[-3000:]}\n{stdout[-6000:]}")
        assert (artifacts / "rc").read_text().strip() == "0"
        events = [json.loads(p.read_text()) for p in (artifacts / "job_events").glob("*.json")]
        assert any(e.get("event") == "playbook_on_stats" for e in events), "no playbook_on_stats event"
        assert topology(cfg) == before, "a plan (check mode) changed the lab"

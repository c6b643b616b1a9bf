"""A running server seen from another pid namespace (a container that shares the data directory but not the host's
processes: podman without --pid host). Both of the engine's tests for "is it running" (kill(pid, 0) through pg_ctl,
and the shared memory's attach count) see only their own namespaces: the node looked stopped, and a regional failover
run in the execution environment rewound a running standby's files (found running `scripts/ee.sh` with EE_MOVE=1).
`unshare --pid --ipc` gives the same view here, with no container."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from armed_helpers import kill_postmaster

from erlmcp_dr import paths

pytestmark = pytest.mark.integration

STATUS = """
import json, sys
from erlmcp_dr.paths import ensure_collection_importable
ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.server import Server, ServerError
try:
    print(json.dumps(Server(sys.argv[1]).status()))
except ServerError as exc:
    print(json.dumps({"error": str(exc)}))
"""


def status_from_another_namespace(data_dir: str) -> dict:
    proc = subprocess.run(["unshare", "--pid", "--ipc", "--fork", "--mount-proc", sys.executable, "-c", STATUS,
                           data_dir], capture_output=True, text=True, timeout=60, check=False,
                          env={"PATH": "/usr/bin:/bin", "ANSIBLE_COLLECTIONS_PATH": str(paths.collections_path())})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(shutil.which("unshare") is None, reason="util-linux's unshare is missing")
def test_a_running_server_is_never_taken_for_stopped_from_another_pid_namespace(fresh_lab):
    data_dir = str(fresh_lab.node("pg-c").data_dir)
    seen = status_from_another_namespace(data_dir)
    assert "error" in seen, seen
    assert "another pid namespace" in seen["error"] and "refusing to treat it as stopped" in seen["error"]
    assert fresh_lab.node("pg-c").server().status()["state"] == "running"  # from here, it is

    kill_postmaster(fresh_lab, "pg-c")  # a crash leaves postmaster.pid behind, and nothing answers on its port
    assert status_from_another_namespace(data_dir) == {"state": "stopped", "pid": None}
    assert fresh_lab.node("pg-c").server().status() == {"state": "stopped", "pid": None}

"""The `runbook` launcher reaches its CLI zygote with C modules only (issue 19: every `runbook run` pays its imports
before it is served; json, socket and signal loaded re, enum and collections: about 10 ms here, 2-3x that busy).

What the launcher loads is read in a fresh interpreter; what the bare interpreter loads already (site, a
sitecustomize) is not counted."""

from __future__ import annotations

import subprocess
import sys

LISTING = "\nimport sys\nprint(' '.join(sorted(sys.modules)))\n"
HEAVY = {"json", "re", "enum", "socket", "signal", "selectors", "collections", "array", "typing", "pathlib", "hashlib",
         "_hashlib", "functools", "logging", "argparse", "erlmcp_dr.cli", "erlmcp_dr.runner", "ansible",
         "ansible_runner"}


def _loaded(code: str) -> set[str]:
    return set(subprocess.run([sys.executable, "-c", code + LISTING], capture_output=True, text=True, check=True,
                              timeout=60).stdout.split())


def test_the_launcher_and_its_hand_over_load_no_pure_python_heavyweights():
    bare = _loaded("")
    loaded = _loaded("import erlmcp_dr.launch\nfrom erlmcp_dr.warm import cli_client")
    assert {"erlmcp_dr.warm.cli_client", "erlmcp_dr.warm.wire", "erlmcp_dr.warm.c_json"} <= loaded
    assert sorted((HEAVY & loaded) - bare) == []


def test_a_failure_of_the_warm_start_before_the_hand_over_runs_the_command_here(monkeypatch, capsys):
    """Whatever breaks the launcher's side before anything is sent (here the key's JSON, as a Python whose C
    accelerator changed would), the command is not lost: run_served returns None and the launcher runs it itself."""
    from erlmcp_dr.warm import cli_client, fingerprint

    def broken(*args, **kwargs):
        raise TypeError("make_encoder() takes other arguments")

    monkeypatch.setattr(fingerprint, "key", broken)
    assert cli_client.run_served(["runbook", "run", "database_switchover"]) is None
    assert "the warm start failed (TypeError: make_encoder() takes other arguments)" in capsys.readouterr().err

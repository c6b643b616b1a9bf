"""A forked warm run shows /proc what the guard's rule reads: its command line and its run marker (warm/title.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from erlmcp_dr.guard import marked_processes
from erlmcp_dr.warm import title

SRC = str(Path(__file__).resolve().parents[2] / "src")
CHILD = """
import sys
from erlmcp_dr.warm import title
title.set_command_line(["ansible-playbook", "[warm run /private/run-1]", "-i", "hosts.yml", "site.yml"])
print(title.set_run_marker(sys.argv[1]), flush=True)
sys.stdin.read()
"""


def test_the_command_line_and_the_marker_are_written_where_proc_reads_them():
    marker = "/state/private/20261206T120000Z-database_failover-ab12"
    env = dict(os.environ, PYTHONPATH=SRC, **{title.MARKER: title.placeholder()})
    child = subprocess.Popen([sys.executable, "-c", CHILD, marker, " " * title.ARGV_ROOM], env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "True"
        cmdline = Path(f"/proc/{child.pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        assert cmdline == [b"ansible-playbook", b"[warm run /private/run-1]", b"-i", b"hosts.yml", b"site.yml"]
        assert child.pid in marked_processes(marker)  # the guard's rule finds it (and its forks) by the marker
        assert child.pid not in marked_processes(marker + "-other")
    finally:
        child.communicate("")


def test_without_the_placeholder_no_marker_is_claimed():
    env = {key: value for key, value in os.environ.items() if key != title.MARKER}
    code = "from erlmcp_dr.warm import title; print(title.set_run_marker('/x'))"
    done = subprocess.run([sys.executable, "-c", code], env=dict(env, PYTHONPATH=SRC), capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == "False"

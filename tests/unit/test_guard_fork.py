"""A guard's holder forked from its caller (plugins/module_utils/_guards/guard_process.py, fork_holder): what the
holder scripts and the etcd lease keeper rely on. Each case runs in a child interpreter whose command line is long,
as an ansible-playbook worker's is (the fork writes the holder's command line over it), and prints what it saw."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from erlmcp_dr import paths

COLLECTION = paths.collection_root()

CALLER = textwrap.dedent('''
    import json, os, sys
    from erlmcp_dr import paths
    paths.ensure_collection_importable()
    from ansible_collections.erlmcp.dr.plugins.module_utils._guards import guard_process

    SCRIPT = sys.argv[1]
    leaked_read, leaked_write = os.pipe()  # a pipe of the caller's: the holder must not keep its write end


    def main(config_fd, answer_fd):
        config = json.loads(guard_process._read_all(config_fd))
        with open("/proc/self/cmdline", "rb") as handle:
            shown = handle.read().split(b"\\0")
        open_fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
        guard_process._answer(answer_fd, dict(ok=True, echo=config, cmdline=[a.decode() for a in shown if a],
                                              open_fds=open_fds, own_fds=[config_fd, answer_fd]))
        import time
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(0.05)
        return 0


    if sys.argv[2] == "short":  # a command line too short to show the holder's: no fork
        guard_process._command_line_area = lambda: (0, 8)
    holder = guard_process.fork_holder(SCRIPT, main)
    if holder is None:
        print(json.dumps({"forked": False}))
        raise SystemExit(0)
    os.close(leaked_write)
    answer = guard_process.start(SCRIPT, {"members": [], "token": "t-1"}, [], 5.0, holder=holder)
    leaked_eof = os.read(leaked_read, 1) == b""  # EOF: the holder closed its copy of the write end
    released = guard_process.release(answer.get("pid"), SCRIPT)
    status = holder.wait()
    print(json.dumps({"forked": True, "answer": answer, "leaked_eof": leaked_eof, "released": released,
                      "killed_by": os.WTERMSIG(status) if status is not None and os.WIFSIGNALED(status) else None}))
''')


def _call(tmp_path, mode: str) -> dict:
    caller = tmp_path / "caller.py"
    caller.write_text(CALLER)
    script = COLLECTION / "plugins" / "module_utils" / "_guards" / "postgres_guard.py"
    padding = "x" * 400  # the caller's command line: long enough to hold the holder's, as a worker's is
    done = subprocess.run([sys.executable, str(caller), str(script), mode, padding], capture_output=True, text=True,
                          timeout=60, check=False, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_forked_holder_answers_shows_its_script_keeps_no_descriptor_of_the_caller_and_is_released(tmp_path):
    seen = _call(tmp_path, "long")
    assert seen["forked"] is True
    answer = seen["answer"]
    assert answer["ok"] is True and answer["echo"] == {"members": [], "token": "t-1"}
    assert answer["cmdline"][1].endswith("_guards/postgres_guard.py")  # what release() and ps look for
    # 0-2 on /dev/null, its two pipes, and the descriptor listing them: nothing of the caller's
    assert len(set(answer["open_fds"]) - {0, 1, 2, *answer["own_fds"]}) == 1
    assert seen["leaked_eof"] is True
    assert seen["released"] is True and seen["killed_by"] == 15


def test_a_command_line_too_short_to_show_the_holder_is_not_forked(tmp_path):
    assert _call(tmp_path, "short") == {"forked": False}

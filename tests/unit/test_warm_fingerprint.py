"""Which zygote may serve a run (erlmcp_dr.warm.fingerprint) and who may talk to it (erlmcp_dr.warm.wire)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from erlmcp_dr.warm import fingerprint, wire


def test_the_zygote_environment_keeps_what_shapes_imports_and_drops_per_run_values_and_secrets():
    run_env = {"ANSIBLE_CONFIG": "/x/ansible.cfg", "PYTHONPATH": "/p", "LANG": "C.UTF-8", "PATH": "/bin",
               "AWX_ISOLATED_DATA_DIR": "/runs/1/artifacts", "ANSIBLE_CACHE_PLUGIN_CONNECTION": "/runs/1/fc",
               "ERLMCP_DR_RUN": "/private/1", "DATABASE_URL": "postgres://u:secret@db/app",
               "AWS_SECRET_ACCESS_KEY": "s3cr3t", "ANSIBLE_BECOME_PASSWORD_FILE": "/pw", "ERLMCP_DR_HOME": "/h"}
    assert fingerprint.zygote_env(run_env) == {"ANSIBLE_CONFIG": "/x/ansible.cfg", "PYTHONPATH": "/p",
                                               "LANG": "C.UTF-8", "PATH": "/bin"}


def test_the_key_changes_with_an_ansible_variable_the_config_file_and_not_with_per_run_values(tmp_path):
    config = tmp_path / "ansible.cfg"
    config.write_text("[defaults]\nforks = 5\n")
    env = {"ANSIBLE_CONFIG": str(config), "PATH": "/bin"}
    key = fingerprint.key(env, str(tmp_path))
    assert fingerprint.key(dict(env, AWX_ISOLATED_DATA_DIR="/runs/2", SOME_APP_VAR="x"), "/elsewhere") == key
    assert fingerprint.key(dict(env, ANSIBLE_FORKS="7"), str(tmp_path)) != key
    config.write_text("[defaults]\nforks = 50\n")
    assert fingerprint.key(env, str(tmp_path)) != key


def test_without_ansible_config_the_working_directory_is_part_of_the_key(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert fingerprint.key({"PATH": "/bin"}, str(tmp_path / "a")) != fingerprint.key({"PATH": "/bin"},
                                                                                       str(tmp_path / "b"))


def test_a_changed_or_removed_loaded_file_makes_the_manifest_stale(tmp_path):
    module = tmp_path / "plugin.py"
    module.write_text("X = 1\n")
    recorded = fingerprint.manifest([str(module)])
    assert fingerprint.stale_files(recorded) == []
    module.write_text("X = 22\n")
    assert fingerprint.stale_files(recorded) == [str(module)]
    module.unlink()
    assert fingerprint.stale_files(recorded) == [str(module)]
    assert fingerprint.stale_files({}) is None
    assert fingerprint.stale_files("not a manifest") is None


def test_the_socket_folder_must_be_private(tmp_path):
    folder = tmp_path / "warm"
    assert wire.private_dir(str(folder)) == str(folder)
    assert folder.stat().st_mode & 0o777 == 0o700
    folder.chmod(0o755)
    with pytest.raises(wire.WireError, match="must be yours and 0700"):
        wire.private_dir(str(folder))
    link = tmp_path / "link"
    link.symlink_to(folder)
    with pytest.raises(wire.WireError, match="is not a folder"):
        wire.private_dir(str(link))


def test_messages_carry_file_descriptors(tmp_path):
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    target = tmp_path / "out"
    with left, right, open(target, "w") as handle:
        wire.send(left, {"argv": ["ansible-playbook", "x.yml"], "env": {"A": "é"}}, [handle.fileno()])
        message, fds = wire.receive(right)
        assert message == {"argv": ["ansible-playbook", "x.yml"], "env": {"A": "é"}}
        assert len(fds) == 1
        os.write(fds[0], b"through the passed fd\n")
        os.close(fds[0])
    assert target.read_text() == "through the passed fd\n"


def test_a_peer_of_this_user_is_accepted():
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        assert wire.peer_uid_is_mine(left)
        assert wire.peer_credentials(left)[0] == os.getpid()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to connect as another user")
def test_a_peer_of_another_user_is_refused():
    """A process running as `nobody` connects (to a socket it can reach, unlike the zygote's 0700 folder): the
    kernel's credentials name its uid, and the check the zygote makes on every connection refuses it."""
    reachable = Path(tempfile.mkdtemp(prefix="erlmcp-dr-peer-", dir="/tmp"))  # pytest's tmp_path is 0700
    reachable.chmod(0o755)
    path = reachable / "s.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    path.chmod(0o777)
    server.listen(1)
    server.settimeout(30)
    other = os.fork()
    if other == 0:  # the other user: a fork that drops to nobody and connects (no exec: it needs no interpreter)
        try:
            os.setgid(65534)
            os.setuid(65534)
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.connect(str(path))
            client.recv(1)
        finally:
            os._exit(0)
    try:
        conn, _ = server.accept()
        with conn:
            assert wire.peer_credentials(conn)[1] == 65534
            assert not wire.peer_uid_is_mine(conn)
    finally:
        server.close()
        os.waitpid(other, 0)
        shutil.rmtree(reachable, ignore_errors=True)


def test_the_guard_side_imports_no_ansible_and_no_runner():
    """The guard is a fresh interpreter per run: erlmcp_dr.warm.client must stay cheap to import."""
    code = ("import sys, erlmcp_dr.warm.client; "
            "print(sorted(m for m in sys.modules if m.startswith(('ansible', 'erlmcp_dr.runner', 'yaml'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=str(Path(__file__).parent))
    assert done.stdout.strip() == "[]"

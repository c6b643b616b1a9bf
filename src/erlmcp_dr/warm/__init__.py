"""The warm start (issue 19): runs start with a fork of a process that has already imported ansible-core.

A run's guard (guard.py) asks a per-user zygote (zygote.py) over a Unix socket in a 0700 folder to run
ansible-playbook for it; the zygote forks a run server, which forks the ansible-playbook process and passes its exit
status back. client.py is the guard's side, fingerprint.py decides which zygote may serve a run, wire.py is the
socket protocol, title.py makes the forked process look like the run's to /proc (command line, run marker).
docs/speed-warm.md explains the choices; docs/design.md ("The run guard and the daemons a run starts") the guard.

Modules imported by the guard (client, fingerprint, wire) use the standard library only: the guard is a fresh
interpreter per run and must stay cheap.
"""

WARM_ENV = "ERLMCP_DR_WARM"  # "0": every run starts ansible-playbook cold
DIR_ENV = "ERLMCP_DR_WARM_DIR"  # where the zygotes' sockets live (default: a 0700 folder per user)
IDLE_ENV = "ERLMCP_DR_WARM_IDLE"  # seconds a zygote waits for a run before it exits
START_TIMEOUT_ENV = "ERLMCP_DR_WARM_START_TIMEOUT"  # seconds a run waits for a zygote to start


def enabled(environ: "dict[str, str]") -> bool:
    return environ.get(WARM_ENV, "1").strip() != "0"

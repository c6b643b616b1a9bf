"""Offline stand-in for get-pip.py, used by ansible-test's pip bootstrap.

ansible-test creates each sanity-test virtual environment with `python -m venv --without-pip`
and then bootstraps pip by downloading get-pip-<version>.py from ci-files.testing.ansible.com,
caching it as ~/.ansible/test/cache/get_pip_<version>.py (see ansible_test/_util/target/setup/
requirements.py, bootstrap()). That host is unreachable here, so scripts/lint.sh places this
file at that cache path and ansible-test runs it instead (through quiet_pip.py, as __main__,
with the arguments it would give get-pip.py: pip options and the pinned pip, setuptools and
wheel requirements).

It does what get-pip.py does, without that download: `python -m ensurepip` installs the pip
wheel bundled with the interpreter, then that pip installs the requested packages from the
package index (PyPI). Both run in subprocesses, so the new pip is imported cleanly.
Runs under every target Python ansible-test uses (3.7 and later): keep it 3.7-compatible.
"""

# MARKER: erlmcp.dr offline get-pip stand-in (scripts/lint.sh replaces files carrying this line)

import os
import subprocess
import sys


def main() -> int:
    args = sys.argv[1:]
    env = dict(os.environ)
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    try:
        import ensurepip  # noqa: F401  (only checks that it exists)
    except ImportError:
        sys.stderr.write(
            f"sanity_getpip: {sys.executable} has no ensurepip module; install the interpreter's venv "
            "support (Debian: python3-venv) or use a Python built with ensurepip (e.g. pyenv)\n"
        )
        return 1
    ensurepip_cmd = [sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"]
    rc = subprocess.call(ensurepip_cmd, env=env, stdout=subprocess.DEVNULL)
    if rc != 0:
        sys.stderr.write(f"sanity_getpip: `{' '.join(ensurepip_cmd)}` failed with status {rc}\n")
        return rc
    if not any(not a.startswith("-") for a in args):
        args = args + ["pip", "setuptools", "wheel"]  # get-pip.py's defaults
    return subprocess.call([sys.executable, "-m", "pip", "install", "--quiet"] + args, env=env)


if __name__ == "__main__":
    sys.exit(main())

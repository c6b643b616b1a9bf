"""Offline stand-in for get-pip.py, used by ansible-test's pip bootstrap.

ansible-test creates each sanity-test virtual environment with `python -m venv --without-pip`
and then bootstraps pip by downloading get-pip-<version>.py from ci-files.testing.ansible.com,
caching it as ~/.ansible/test/cache/get_pip_<version>.py (see ansible_test/_util/target/setup/
requirements.py, bootstrap()). That host is unreachable here, so scripts/lint.sh places this
file at that cache path and ansible-test runs it instead (through quiet_pip.py, as __main__),
with the arguments it gives get-pip.py, e.g.
`--disable-pip-version-check pip==24.2 --no-setuptools --no-wheel`.

It takes get-pip.py's own options and passes every other argument to `pip install --upgrade`, as get-pip.py
does:
  --no-setuptools, --no-wheel   do not install setuptools / wheel (also PIP_NO_SETUPTOOLS /
                                PIP_NO_WHEEL set to a non-empty value); without them each is
                                installed only when absent and the Python is older than 3.12,
                                as current get-pip.py does.
Instead of get-pip.py's embedded pip, `python -m ensurepip` installs the pip wheel bundled with
the interpreter, then that pip installs the requested packages from the package index. On
Python < 3.12 ensurepip also installs setuptools; when it was absent and is not wanted, it is
removed again, so the environment holds what get-pip.py would have left. Every step runs in a
subprocess, so the new pip is imported cleanly.
Runs under every target Python ansible-test uses (3.8 and later): keep it 3.8-compatible.
"""

# MARKER: erlmcp.dr offline get-pip stand-in (scripts/lint.sh replaces files carrying this line)

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import subprocess
import sys

PROG = "sanity_getpip"


def parse(argv: list[str], environ: dict[str, str]) -> tuple[list[str], list[str]]:
    """(pip install arguments, extra packages to remove after ensurepip) for get-pip.py's arguments."""
    parser = argparse.ArgumentParser(prog=PROG, add_help=False, allow_abbrev=False)
    parser.add_argument("--no-setuptools", action="store_true")
    parser.add_argument("--no-wheel", action="store_true")
    options, pip_args = parser.parse_known_args(argv)
    old_python = sys.version_info < (3, 12)
    wanted = {
        "setuptools": not (options.no_setuptools or environ.get("PIP_NO_SETUPTOOLS")),
        "wheel": not (options.no_wheel or environ.get("PIP_NO_WHEEL")),
    }
    packages = ["pip"]  # get-pip.py always adds it; a pinned pip==X in pip_args still decides the version
    unwanted: list[str] = []
    for name in ("setuptools", "wheel"):
        absent = importlib.util.find_spec(name) is None
        if wanted[name] and absent and old_python:
            packages.append(name)
        elif absent and not wanted[name]:
            unwanted.append(name)  # ensurepip may bring it (setuptools on < 3.12): take it out again
    return pip_args + packages, unwanted


def run(command: list[str], env: dict[str, str]) -> int:
    rc = subprocess.call(command, env=env, stdout=subprocess.DEVNULL)
    if rc != 0:
        sys.stderr.write(f"{PROG}: `{' '.join(command)}` failed with status {rc}\n")
    return rc


def main() -> int:
    env = dict(os.environ)
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    if importlib.util.find_spec("ensurepip") is None:
        sys.stderr.write(
            f"{PROG}: {sys.executable} has no ensurepip module; install the interpreter's venv support "
            "(Debian: python3-venv) or use a Python built with ensurepip (e.g. pyenv)\n"
        )
        return 1
    install_args, unwanted = parse(sys.argv[1:], env)
    rc = run([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"], env)
    if rc == 0:
        rc = run([sys.executable, "-m", "pip", "install", "--quiet", "--upgrade"] + install_args, env)
    importlib.invalidate_caches()  # site-packages changed under this process
    for name in unwanted:
        if rc == 0 and importlib.util.find_spec(name) is not None:
            rc = run([sys.executable, "-m", "pip", "uninstall", "--yes", "--quiet", name], env)
    return rc


if __name__ == "__main__":
    sys.exit(main())

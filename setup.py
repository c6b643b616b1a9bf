"""The wheel carries the collection, the way PyPI's `ansible` package does: its files go to
site-packages/ansible_collections/erlmcp/dr, where ansible-core finds them with no configuration.

What goes there is exactly the tarball `ansible-galaxy collection build` makes from this tree
(galaxy.yml's build_ignore decides; MANIFEST.json and FILES.json as Galaxy writes them), so the
wheel and the Galaxy artifact cannot ship different content. Everything else is in pyproject.toml.
An editable install (`pip install -e .`, scripts/setup.sh) gets no copy: the package finds the
checkout itself (src/erlmcp_dr/paths.py) and links it under .collections/.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
COLLECTION_DIR = ("ansible_collections", "erlmcp", "dr")


def build_collection(source: Path, target: Path) -> None:
    """Unpack the collection tarball built from `source` into `target` (replaced if present)."""
    with tempfile.TemporaryDirectory(prefix="erlmcp-dr-collection-") as tmp:
        subprocess.run(  # ansible-core is a build requirement (pyproject.toml [build-system])
            [sys.executable, "-m", "ansible.cli.galaxy", "collection", "build", "--force",
             "--output-path", tmp, str(source)],
            check=True, stdout=subprocess.DEVNULL,
        )
        tarballs = list(Path(tmp).glob("erlmcp-dr-*.tar.gz"))
        if len(tarballs) != 1:
            raise RuntimeError(f"ansible-galaxy collection build made {tarballs} in {tmp}, "
                               "expected one erlmcp-dr-*.tar.gz")
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        with tarfile.open(tarballs[0]) as archive:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
                archive.extractall(target, filter="data")
            else:
                archive.extractall(target)  # our own tarball, just built


class BuildPyWithCollection(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        build_collection(ROOT, Path(self.build_lib).joinpath(*COLLECTION_DIR))


setup(cmdclass={"build_py": BuildPyWithCollection})

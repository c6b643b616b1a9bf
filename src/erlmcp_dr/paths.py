"""Where things live: the collection, the run folders, the collection search path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

COLLECTION_ENV = "ERLMCP_DR_COLLECTION"
HOME_ENV = "ERLMCP_DR_HOME"


def collection_root() -> Path:
    """The erlmcp.dr collection: $ERLMCP_DR_COLLECTION, else the checkout this package sits in."""
    configured = os.environ.get(COLLECTION_ENV)
    if configured:
        root = Path(configured).resolve()
    else:
        root = Path(__file__).resolve().parents[2]
    if not (root / "galaxy.yml").is_file():
        raise FileNotFoundError(
            f"no erlmcp.dr collection at {root} (galaxy.yml missing); set {COLLECTION_ENV} to the collection's root"
        )
    return root


def state_home() -> Path:
    """Where runs and locks are kept: $ERLMCP_DR_HOME, else the collection's .runs folder."""
    configured = os.environ.get(HOME_ENV)
    return Path(configured).resolve() if configured else collection_root() / ".runs"


def collections_path() -> Path:
    """A folder holding ansible_collections/erlmcp/dr -> the collection root, made on demand."""
    base = collection_root() / ".collections"
    link = base / "ansible_collections" / "erlmcp" / "dr"
    if not (link / "galaxy.yml").is_file():
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(Path("..") / ".." / "..", target_is_directory=True)
    return base


def ensure_collection_importable() -> None:
    """Lets controller code import the collection's module_utils as ansible_collections.erlmcp.dr."""
    path = str(collections_path())
    if path not in sys.path:
        sys.path.insert(0, path)

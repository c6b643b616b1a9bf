# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The database drivers (psycopg, redis-py) are imported only when connecting: these answer the two
questions asked before that, without importing them."""

from __future__ import annotations

import importlib


def import_error(package):
    """None when `package` can be imported, else the ImportError (for missing_required_lib)."""
    try:
        importlib.import_module(package)
    except ImportError as exc:
        return exc
    return None


def is_error_of(exc, package, base_name):
    """Whether exc is one of `package`'s errors (a subclass of its `base_name`), without importing it."""
    return any(cls.__module__.split(".")[0] == package and cls.__name__ == base_name for cls in type(exc).__mro__)

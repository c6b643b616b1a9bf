# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The durable "rewind in progress" marker of a data directory (pg_standby_follow's rewind, issues 18 and 21).

A run killed while pg_rewind copies (kill -9 of the controller, a lost SSH session) leaves a data directory that
pg_controldata describes exactly as before the rewind: PostgreSQL 14+'s pg_rewind truncates and rewrites the files
first and updates global/pg_control LAST (after every file). Only this marker, written before pg_rewind starts and
removed once the node is verified as a standby, tells a later run (this controller or another) that the files are
half the primary's. It lives beside the data directory (pg_rewind would delete it inside: the source has no such
file), named after it (two data directories may share a parent), 0600 and owned like the data directory: it holds
the node's own config files, which pg_rewind overwrites with the primary's.

Private to the collection: the API may change between releases.
"""

from __future__ import annotations

import json
import os
import time

from ansible_collections.erlmcp.dr.plugins.module_utils._common.files import fsync_folder
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.server import write_owned

MARKER_SUFFIX = ".erlmcp-dr.rewind-in-progress"
PHASE_REWINDING = "rewinding"  # pg_rewind may be copying: the data directory may be half rewritten
PHASE_REWOUND = "rewound"  # pg_rewind ended well; the node still has to be configured, started and verified
# What pg_rewind's last step (update_controlfile) changes: the control file then describes the source's checkpoint,
# in state "in archive recovery" with a minimum recovery point.
CONTROL_KEYS = ("Database cluster state", "Latest checkpoint location", "Latest checkpoint's TimeLineID",
                "Minimum recovery ending location")


class MarkerError(Exception):
    pass


def marker_path(data_dir):
    """<parent of data_dir>/.<name of data_dir>.erlmcp-dr.rewind-in-progress."""
    data_dir = os.path.abspath(data_dir).rstrip("/")
    return os.path.join(os.path.dirname(data_dir), ".%s%s" % (os.path.basename(data_dir), MARKER_SUFFIX))


def control_identity(control):
    """The control file's values that pg_rewind's last step changes (control: Server.controldata())."""
    return dict((key, control.get(key)) for key in CONTROL_KEYS)


def read_marker(data_dir):
    """The marker's content (dict), None when there is none; MarkerError when it cannot be read."""
    path = marker_path(data_dir)
    try:
        with open(path) as handle:
            text = handle.read()
    except FileNotFoundError:
        return None
    except (IOError, OSError) as exc:
        raise MarkerError("cannot read the rewind marker %s: %s" % (path, exc.strerror)) from None
    try:
        content = json.loads(text)
    except ValueError:
        content = None
    if not isinstance(content, dict) or not isinstance(content.get("own_files"), dict) \
            or content.get("phase") not in (PHASE_REWINDING, PHASE_REWOUND):
        raise MarkerError("the rewind marker %s is not one this collection wrote (expected JSON with phase and "
                          "own_files): a pg_rewind of %s was interrupted; check the node, re-clone it if in doubt, "
                          "then remove the marker" % (path, data_dir))
    return content


def start_marker(data_dir, own_files, control, source):
    """Write the marker before pg_rewind starts: the node's own files, its control file's identity, the source."""
    content = dict(phase=PHASE_REWINDING, data_dir=os.path.abspath(data_dir), source=source, own_files=own_files,
                   control=control_identity(control),
                   started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    _write(data_dir, content)
    return content


def mark_rewound(data_dir, marker):
    """pg_rewind ended well: the files are the primary's; what is left is configuring and starting the node."""
    content = dict(marker, phase=PHASE_REWOUND)
    _write(data_dir, content)
    return content


def remove_marker(data_dir):
    """Remove the marker (once the node is verified); whether there was one."""
    path = marker_path(data_dir)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    fsync_folder(os.path.dirname(path))
    return True


TIMELINE_KEY = "Latest checkpoint's TimeLineID"


def rewind_finished(marker, control):
    """Whether the interrupted pg_rewind had ended: the marker says so, or the control file's checkpoint is on another
    timeline than when the marker was written. Only pg_rewind's last step (after every other file) does that: it
    writes the source's control data. Any other change says nothing: pg_rewind first runs a crashed node's recovery
    in single-user mode (a new shutdown checkpoint on the same timeline), then copies."""
    if marker.get("phase") == PHASE_REWOUND:
        return True
    before, now = (marker.get("control") or {}).get(TIMELINE_KEY), control.get(TIMELINE_KEY)
    return bool(before and now) and str(before) != str(now)


def _write(data_dir, content):
    write_owned(marker_path(data_dir), json.dumps(content, sort_keys=True) + "\n", data_dir, mode=0o600)

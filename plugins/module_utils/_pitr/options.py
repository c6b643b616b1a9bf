# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options the pgBackRest modules share (pg_backup, pg_restore, pg_restore_verify, pg_restore_in_place), once.

Each module's argument_spec() is the PostgreSQL connection's options, these, and its own. The doc fragment
erlmcp.dr.pgbackrest documents them: its DOCUMENTATION the repository's options (every module), SCRATCH the scratch
instance's (the two that restore). pg_data_dir, scratch_dir and recovery_timeout are documented by each module, since
what they mean differs a little from one to the other.
"""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._pitr.pgbackrest import DEFAULT_TIMEOUT


def repository_argument_spec():
    """Which repository and stanza, the program and how long one command may take, and the live data directory
    whose owner runs pgBackRest."""
    return dict(
        stanza=dict(type="str", required=True),
        config=dict(type="path"),
        repo=dict(type="int"),
        pg_data_dir=dict(type="path", required=True),
        pgbackrest=dict(type="str", default="pgbackrest"),
        command_timeout=dict(type="int", default=DEFAULT_TIMEOUT),
    )


def scratch_argument_spec():
    """Where a restore's scratch instance lives and runs, away from the cluster's live data directories, and how
    long it may take to start and to replay."""
    return dict(
        live_data_dirs=dict(type="list", elements="path", default=[]),
        scratch_dir=dict(type="path", required=True),
        scratch_port=dict(type="int"),
        pg_bin_dir=dict(type="path"),
        start_timeout=dict(type="int", default=300),
        recovery_timeout=dict(type="int", default=600),
    )

# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared option documentation for the pgBackRest modules (pg_backup, pg_restore, pg_restore_verify).

C(erlmcp.dr.pgbackrest) documents C(_pitr.options.repository_argument_spec()) but pg_data_dir (each module says what
its data directory is for); C(erlmcp.dr.pgbackrest.scratch) documents C(_pitr.options.scratch_argument_spec()) but
scratch_dir and recovery_timeout, for the modules that restore into a scratch instance.
"""

from __future__ import annotations


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
options:
  stanza:
    description: The pgBackRest stanza (the cluster's name in the repository).
    type: str
    required: true
  config:
    description: The pgBackRest config file; default pgBackRest's own (C(/etc/pgbackrest/pgbackrest.conf)).
    type: path
  repo:
    description:
      - The repository (pgBackRest's C(--repo)) when the config names several, e.g. C(2) for an S3 repository beside
        a local C(repo1); default pgBackRest's own choice (repo1 for a backup, the first holding it for a restore).
    type: int
  pgbackrest:
    description: The pgBackRest program (a name looked up in PATH, or a path).
    type: str
    default: pgbackrest
  command_timeout:
    description: Seconds one pgBackRest command may take.
    type: int
    default: 3600
"""

    SCRATCH = r"""
options:
  live_data_dirs:
    description: Every live data directory of the cluster (refused as, inside or under O(scratch_dir)).
    type: list
    elements: path
    default: []
  scratch_port:
    description: The scratch instance's port on 127.0.0.1; default a free one.
    type: int
  pg_bin_dir:
    description: The folder holding pg_ctl; default a known install path or PATH.
    type: path
  start_timeout:
    description: Seconds pg_ctl gets to start (and stop) the scratch instance.
    type: int
    default: 300
"""

# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared option documentation for the SQL-speaking pg_* modules.

C(erlmcp.dr.postgres) documents every option of
C(_postgres.connection_argument_spec()) (login_host, login_port, login_user,
login_password, login_db, connect_timeout).
C(erlmcp.dr.postgres.credentials) documents the same options without login_host and
login_port, for modules whose targets carry their own host and port (pg_replication_info).
"""

from __future__ import annotations


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host name or IP address of the PostgreSQL server to connect to (TCP).
    type: str
    default: 127.0.0.1
  login_port:
    description:
      - TCP port of the PostgreSQL server.
    type: int
    default: 5432
  login_user:
    description:
      - Role to log in as. It must be a superuser (or hold the privileges the module needs).
    type: str
    default: postgres
  login_password:
    description:
      - Password of O(login_user). Never logged.
    type: str
  login_db:
    description:
      - Database to connect to.
    type: str
    default: postgres
  connect_timeout:
    description:
      - Seconds to wait for the connection to be established before giving up.
    type: int
    default: 5
requirements:
  - psycopg >= 3 (Python library) on the host that runs the module
"""

    CREDENTIALS = r"""
options:
  login_user:
    description:
      - Role to log in as on every node. It must be a superuser (or hold the privileges the module needs).
    type: str
    default: postgres
  login_password:
    description:
      - Password of O(login_user). Never logged.
    type: str
  login_db:
    description:
      - Database to connect to.
    type: str
    default: postgres
  connect_timeout:
    description:
      - Seconds to wait for each connection to be established before giving up.
    type: int
    default: 5
requirements:
  - psycopg >= 3 (Python library) on the host that runs the module
"""

"""How a PostgreSQL connection error reads (module_utils/_postgres/sql.py): libpq's reason, on one line, whatever line
libpq put it on, without libpq's own "connection to server at ... failed:" (the message names the endpoint)."""

from __future__ import annotations

import pytest

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.sql import (  # noqa: E402
    describe_connect_error,
    libpq_reason,
)

WHERE = 'connection failed: connection to server at "127.0.0.1", port 5433 failed: '


@pytest.mark.parametrize(("libpq", "reason"), [
    (WHERE + "server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally\n"
     "\tbefore or while processing the request.",
     "server closed the connection unexpectedly This probably means the server terminated abnormally before or while "
     "processing the request."),
    (WHERE + 'FATAL:  database "nope" does not exist', 'FATAL:  database "nope" does not exist'),
    ('could not translate host name "nowhere.invalid" to address: Name or service not known',
     'could not translate host name "nowhere.invalid" to address: Name or service not known'),
    ("", "Exception"),
])
def test_the_reason_is_every_line_of_it_without_libpqs_where(libpq: str, reason: str) -> None:
    assert libpq_reason(Exception(libpq)) == reason


def test_a_server_that_hangs_up_is_said_with_the_endpoint_and_why() -> None:
    libpq = WHERE + "server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally"
    message = describe_connect_error(Exception(libpq), {"host": "127.0.0.1", "port": 5433, "user": "erlmcp_dr"})
    assert message == ("cannot connect to 127.0.0.1:5433 as erlmcp_dr: server closed the connection unexpectedly "
                       "This probably means the server terminated abnormally")

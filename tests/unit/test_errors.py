"""The one error layer (_errors): ModuleFailure always carries error_kind, the translator base turns a system's own
and its driver's errors into ModuleFailure, and each system's subclass (PostgreSQL, Redis, DNS) says only what
differs. Real driver exceptions (psycopg, redis-py, dnspython), no server needed."""

from __future__ import annotations

import socket

import pytest

from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common import module as _module  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import (  # noqa: E402
    ErrorTranslator,
    ModuleFailure,
)
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import WaitTimeout  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._dns import base as d  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import sql as pg  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._redis import client as rd  # noqa: E402


class KettleError(Exception):
    def __init__(self, message, kind=None):
        super().__init__(message)
        self.kind = kind


class KettleErrors(ErrorTranslator):
    """A system with no driver library: only its own errors are translated."""

    system = "Kettle"
    own_errors = (KettleError,)


def test_every_failure_carries_error_kind_other_unless_told():
    assert ModuleFailure("no").facts == {"error_kind": "other"}
    assert ModuleFailure("no", error_kind="auth", node="pg-a").facts == {"error_kind": "auth", "node": "pg-a"}
    assert ModuleFailure("no", error_kind=None, changed=False).kind == "other"


def test_translator_base_passes_own_errors_as_they_are_with_their_kind_and_the_facts_gathered():
    facts = {"changed": False}
    with pytest.raises(ModuleFailure) as failure:
        with KettleErrors().translate(facts, "while boiling"):
            facts["temperature"] = 99
            raise KettleError("  the kettle is empty: fill it (water)  ", kind="refused")
    assert str(failure.value) == "the kettle is empty: fill it (water)"
    assert failure.value.facts == {"changed": False, "temperature": 99, "error_kind": "refused"}


def test_translator_base_leaves_bugs_and_module_failures_alone():
    with pytest.raises(KeyError):
        with KettleErrors().translate({}):
            raise KeyError("a bug")
    original = ModuleFailure("already said", error_kind="timeout", step=3)
    with pytest.raises(ModuleFailure) as failure:
        with KettleErrors().translate({"other": 1}):
            raise original
    assert failure.value is original


def test_a_system_without_a_library_needs_nothing_imported():
    assert KettleErrors().import_error() is None and KettleErrors().warm() is True
    assert not KettleErrors().is_driver_error(ValueError("x"))


def test_postgres_translator_words_psycopg_errors_with_their_context():
    psycopg = pytest.importorskip("psycopg")
    with pytest.raises(ModuleFailure) as failure:
        with pg.translate_errors({"fenced": False}, "while fencing"):
            raise psycopg.OperationalError("server closed the connection unexpectedly\n")
    assert str(failure.value) == "PostgreSQL error while fencing: server closed the connection unexpectedly"
    assert failure.value.facts == {"fenced": False, "error_kind": "other"}


def test_postgres_translator_keeps_a_pg_errors_kind():
    with pytest.raises(ModuleFailure) as failure:
        with pg.translate_errors({}):
            raise pg.PgError("authentication failed for user postgres at 127.0.0.1:5432 (login_password)", kind="auth")
    assert failure.value.kind == "auth" and "(login_password)" in str(failure.value)


def test_redis_translator_words_redis_py_errors_and_keeps_redis_errors():
    redis = pytest.importorskip("redis")
    with pytest.raises(ModuleFailure) as failure:
        with rd.translate_errors({"keys": 3}, "while restoring 127.0.0.1:6379"):
            raise redis.exceptions.ResponseError("LOADING Redis is loading the dataset in memory")
    assert str(failure.value) == ("Redis error while restoring 127.0.0.1:6379: "
                                  "LOADING Redis is loading the dataset in memory")
    assert failure.value.facts == {"keys": 3, "error_kind": "other"}
    with pytest.raises(ModuleFailure) as failure:
        with rd.translate_errors({}):
            raise rd.RedisError("the password was rejected (login_password)", kind="auth")
    assert failure.value.kind == "auth"


def test_dns_translator_names_the_server_and_the_option_for_driver_and_socket_errors():
    dns_exception = pytest.importorskip("dns.exception")
    params = {"timeout": 2.0, "zone": "example.test", "tsig_key_name": "ddns"}
    with pytest.raises(ModuleFailure) as failure:
        with d.translate_errors({"applied": False}, params, where="ns1 127.0.0.1:5353"):
            raise dns_exception.Timeout()
    assert "no answer from ns1 127.0.0.1:5353 within 2.0s" in str(failure.value)
    assert failure.value.facts == {"applied": False, "error_kind": "timeout"}
    with pytest.raises(ModuleFailure) as failure:
        with d.translate_errors({}, params, where="ns1 127.0.0.1:5353"):
            raise ConnectionRefusedError(111, "refused")
    assert failure.value.kind == "refused" and "(server, port)" in str(failure.value)
    with pytest.raises(ModuleFailure) as failure:
        with d.translate_errors({}, params):
            raise socket.gaierror(-2, "Name or service not known")
    assert failure.value.kind == "dns"


def test_dns_translator_turns_a_wait_timeout_into_a_timeout_failure():
    with pytest.raises(ModuleFailure) as failure:
        with d.translate_errors({}, {}):
            raise WaitTimeout("the record did not change within 30s (wait_timeout)")
    assert failure.value.kind == "timeout" and "(wait_timeout)" in str(failure.value)


def test_each_system_declares_its_driver_once():
    assert (pg.POSTGRES.library, rd.REDIS.library, d.DNS.library) == ("psycopg", "redis", "dnspython")
    assert all(isinstance(t, ErrorTranslator) for t in (pg.POSTGRES, rd.REDIS, d.DNS))


def test_module_ending_takes_the_translators_it_needs():
    assert _module.translators_for((), {}) == ()
    assert _module.translators_for(pg.POSTGRES, {}) == (pg.POSTGRES,)
    assert _module.translators_for([rd.REDIS, d.DNS], {}) == (rd.REDIS, d.DNS)
    chooses = _module.translators_for(lambda params: pg.POSTGRES if params["method"] == "read_only" else (),
                                      {"method": "stop"})
    assert chooses == ()


def test_module_ending_names_a_missing_driver_by_its_library():
    class Missing(ErrorTranslator):
        library = "kettle-py"
        import_name = "kettle_py_is_not_installed"

    library, error = _module.missing_driver((KettleErrors(), Missing()))
    assert library == "kettle-py" and isinstance(error, ImportError)


def test_module_ending_turns_an_untranslated_driver_error_into_a_failure_and_leaves_bugs_alone():
    psycopg = pytest.importorskip("psycopg")

    def leaky(params, **mode):
        raise psycopg.OperationalError("the connection was lost")

    with pytest.raises(ModuleFailure) as failure:
        _module.call_engine(leaky, {}, (pg.POSTGRES,), check_mode=False)
    assert str(failure.value) == "PostgreSQL error: the connection was lost"

    def buggy(params, **mode):
        raise TypeError("a bug")

    with pytest.raises(TypeError):
        _module.call_engine(buggy, {}, (pg.POSTGRES,), check_mode=False)


def test_driver_errors_carry_the_kind_their_driver_tells():
    psycopg = pytest.importorskip("psycopg")
    redis = pytest.importorskip("redis")
    with pytest.raises(ModuleFailure) as failure:
        with pg.translate_errors({}):
            raise psycopg.OperationalError('connection to server at "127.0.0.1", port 1 failed: Connection refused')
    assert failure.value.kind == "refused"
    for error, kind in ((redis.exceptions.AuthenticationError("invalid password"), "auth"),
                        (redis.exceptions.TimeoutError("Timeout reading from socket"), "timeout"),
                        (redis.exceptions.ConnectionError("Error 111 connecting. Connection refused."), "refused")):
        with pytest.raises(ModuleFailure) as failure:
            with rd.translate_errors({}):
                raise error
        assert failure.value.kind == kind, error

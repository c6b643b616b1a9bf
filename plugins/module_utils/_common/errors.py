# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's one error layer: the failure every engine raises, and the translator each system subclasses.

Error handling is declared once here and, per system, only what differs is said in a subclass (PostgreSQL in
_postgres/sql.py, Redis in _redis/client.py, DNS in _dns/base.py), the way amazon.aws declares its AWSErrorHandler
once and a
handler per service. Every failure that leaves an engine is a ModuleFailure carrying the same facts: the result
keys gathered so far and `error_kind`, so a reader (a report, an auto-failover bot) can tell an authentication
problem from a timeout without parsing the message.

Private to the collection (leading underscore): the API may change between releases. Python 3.8 syntax at most:
module_utils run on managed hosts.
"""

from __future__ import annotations

import contextlib

from ansible_collections.erlmcp.dr.plugins.module_utils._common.driver import import_error, is_error_of

# auth/refused/timeout/dns come from connecting; a system may add its own (DNS: notzone, notauth, stale).
COMMON_KINDS = ("auth", "refused", "timeout", "dns", "other")
DEFAULT_KIND = "other"


class ModuleFailure(Exception):
    """What an engine's run() raises to fail: the message as is, and the facts (result keys) gathered so far.

    `error_kind` is always among the facts (DEFAULT_KIND unless the failure says which), so every failure reads the
    same. The module passes both on to fail_json(msg=str(exc), **exc.facts); the facts never hold a secret.
    """

    def __init__(self, message, error_kind=None, **facts):
        super(ModuleFailure, self).__init__(message)
        facts["error_kind"] = error_kind or facts.get("error_kind") or DEFAULT_KIND
        self.facts = facts

    @property
    def kind(self):
        return self.facts["error_kind"]


class ErrorTranslator(object):
    """Turns one system's errors into ModuleFailure; a subclass says only what differs.

    A subclass sets:
      system       the name in a driver error's message ("PostgreSQL error while fencing: ...")
      library      the Python library an operator installs (for missing_required_lib), None when the system has none
      import_name  what to import to know it is there, when it is not the library's name
      error_base   (package, base class name) of the library's errors, recognised without importing it
      own_errors   the system's own exception classes: operator-ready messages with a `kind`, passed on as they are
    and may override describe() for errors it words itself (DNS names the server and the TSIG key).

    Use: `with translator.translate(facts, "while fencing"): ...` where `facts` is the dict of result keys gathered
    so far (read when the error happens). ModuleFailure passes through unchanged; other exceptions (bugs) are not
    hidden.
    """

    system = "the service"
    library = None
    import_name = None
    error_base = None
    own_errors = ()

    # -- the driver ---------------------------------------------------------------------------------------------

    def import_error(self):
        """None when the library imports (or the system needs none), else the ImportError."""
        if self.library is None:
            return None
        return import_error(self.import_name or self.library)

    def warm(self):
        """Import the library now, if it is there, so the workers ansible-core forks from this process inherit it
        (called when an action plugin is loaded; see _module.warm_driver). Whether it imported."""
        return self.import_error() is None

    def is_driver_error(self, exc):
        return self.error_base is not None and is_error_of(exc, *self.error_base)

    def driver_error_kind(self, exc):
        """The kind of one of the driver's errors; a system that can tell (from libpq's words, redis-py's classes)
        says so."""
        return DEFAULT_KIND

    # -- the translation ----------------------------------------------------------------------------------------

    def describe(self, exc, context=""):
        """(message, kind) for an error this system owns, None for anything else (a bug, left to surface)."""
        if self.own_errors and isinstance(exc, self.own_errors):
            return str(exc).strip(), getattr(exc, "kind", None)
        if self.is_driver_error(exc):
            message = "%s error%s: %s" % (self.system, " " + context if context else "", str(exc).strip())
            return message, self.driver_error_kind(exc)
        return None

    def failure(self, exc, facts, context=""):
        """The ModuleFailure for exc, or None when exc is not this system's."""
        described = self.describe(exc, context)
        if described is None:
            return None
        message, kind = described
        gathered = dict(facts)
        kind = kind or gathered.pop("error_kind", None)
        gathered.pop("error_kind", None)
        return ModuleFailure(message, error_kind=kind, **gathered)

    @contextlib.contextmanager
    def translate(self, facts, context=""):
        try:
            yield
        except ModuleFailure:
            raise
        except Exception as exc:
            failure = self.failure(exc, facts, context)
            if failure is None:
                raise
            raise failure from None

# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Incident notifications, the senders: one HTTP POST (Slack, PagerDuty, webhook) or one SMTP session per attempt,
retried within a deadline when the failure is transient, never when the receiver refused.

Python's standard library only (urllib, smtplib, ssl). Every outcome is an Attempt, never an exception: a failed
delivery is reported, it never fails the task.
"""

from __future__ import annotations

import json
import smtplib
import socket
import ssl
import time
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate, make_msgid


USER_AGENT = "erlmcp.dr-notify/1"
RESPONSE_EXCERPT = 300


class Attempt(object):
    """One try: ok, the receiver's status (HTTP or SMTP code) when it answered, the error, and whether to retry."""

    def __init__(self, ok, status=None, error=None, retry=False, response=None):
        self.ok = ok
        self.status = status
        self.error = error
        self.retry = retry
        self.response = response


def retryable_http(status):
    """HTTP: 5xx and 429 (rate limited: PagerDuty and Slack ask clients to retry) are transient; any other 4xx
    (bad payload, invalid routing key, revoked webhook) would fail again the same way, and 3xx is not followed."""
    return status >= 500 or status == 429


def retryable_smtp(code):
    """SMTP is the other way round (RFC 5321): 4yz replies are transient, 5yz permanent."""
    return 400 <= code < 500


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # a POST must not be replayed elsewhere (or turned into a GET): report the 3xx


def _tls_context(settings):
    context = ssl.create_default_context(cafile=settings.get("ca_file") or None)
    if settings.get("validate_certs") is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def post_json(url, payload, settings, timeout, method="POST", headers=None):
    """One HTTP request with a JSON body -> Attempt."""
    body = json.dumps(payload).encode("utf-8")
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("Content-Type", "application/json")
    request.add_header("User-Agent", USER_AGENT)
    for key, value in (headers or {}).items():
        request.add_header(str(key), str(value))
    handlers = [_NoRedirect()]
    if url.lower().startswith("https:"):
        handlers.append(urllib.request.HTTPSHandler(context=_tls_context(settings)))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(request, timeout=timeout) as response:
            text = response.read(64 * 1024).decode("utf-8", "replace")
            return Attempt(True, status=response.status, response=text[:RESPONSE_EXCERPT])
    except urllib.error.HTTPError as exc:
        text = _read_error_body(exc)
        return Attempt(False, status=exc.code, retry=retryable_http(exc.code),
                       error="HTTP %s %s%s" % (exc.code, exc.reason, ": " + text if text else ""), response=text)
    except urllib.error.URLError as exc:
        return Attempt(False, error="could not reach the receiver: %s" % (exc.reason,), retry=True)
    except (socket.timeout, TimeoutError) as exc:
        return Attempt(False, error="no answer within %ss: %s" % (timeout, exc or "timed out"), retry=True)
    except (OSError, ValueError) as exc:  # connection reset mid-answer, a bad URL
        return Attempt(False, error="%s: %s" % (type(exc).__name__, exc), retry=isinstance(exc, OSError))


def _read_error_body(exc):
    try:
        return exc.read(64 * 1024).decode("utf-8", "replace").strip()[:RESPONSE_EXCERPT]
    except Exception:  # the body is a diagnostic only
        return ""


def send_slack(payload, settings, timeout):
    """Slack answers 200 with the body `ok`; anything else is a failure (invalid_payload, no_service, ...)."""
    outcome = post_json(settings["webhook_url"], payload, settings, timeout)
    if outcome.ok and (outcome.response or "").strip() not in ("ok", ""):
        return Attempt(False, status=outcome.status, error="Slack answered %r instead of 'ok'" % outcome.response,
                       response=outcome.response)
    return outcome


def send_pagerduty(event, settings, timeout, default_url):
    """The Events API v2 answers 202 {"status": "success", "dedup_key": ...}; 400 for an invalid event or routing
    key (not retried), 429 when rate limited, 5xx when it is in trouble (both retried)."""
    return post_json(settings.get("events_url") or default_url, event, settings, timeout)


def send_webhook(payload, settings, timeout):
    return post_json(settings["url"], payload, settings, timeout, method=(settings.get("method") or "POST").upper(),
                     headers=settings.get("headers"))


def send_email(mail, settings, port, timeout):
    """One SMTP session: STARTTLS (default) or implicit TLS, AUTH when a username is given, then the message."""
    message = EmailMessage()
    message["Subject"] = mail["subject"]
    message["From"] = mail["from"]
    message["To"] = ", ".join(mail["to"])
    if mail["cc"]:
        message["Cc"] = ", ".join(mail["cc"])
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain="erlmcp.dr")
    message.set_content(mail["body"])
    context = _tls_context(settings)
    try:
        if settings.get("ssl"):
            client = smtplib.SMTP_SSL(settings["host"], port, timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(settings["host"], port, timeout=timeout)
        with client:
            client.ehlo()
            if not settings.get("ssl") and settings.get("starttls", True):
                client.starttls(context=context)
                client.ehlo()
            if settings.get("username"):
                client.login(settings["username"], settings.get("password") or "")
            refused = client.send_message(message, to_addrs=mail["to"] + mail["cc"])
        if refused:
            return Attempt(False, status=250, error="refused recipients: %s" % ", ".join(
                "%s (%s)" % (rcpt, code) for rcpt, (code, _msg) in sorted(refused.items())))
        return Attempt(True, status=250)
    except smtplib.SMTPNotSupportedError as exc:
        return Attempt(False, error="the server does not offer STARTTLS (starttls: false turns it off): %s" % exc)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _msg in exc.recipients.values()]
        return Attempt(False, status=codes[0] if codes else None, retry=all(retryable_smtp(c) for c in codes),
                       error="every recipient was refused: %s" % ", ".join(
                           "%s (%s %s)" % (r, c, _text(m)) for r, (c, m) in sorted(exc.recipients.items())))
    except smtplib.SMTPResponseException as exc:
        return Attempt(False, status=exc.smtp_code, retry=retryable_smtp(exc.smtp_code),
                       error="SMTP %s %s" % (exc.smtp_code, _text(exc.smtp_error)))
    except ssl.SSLError as exc:
        return Attempt(False, error="TLS failed: %s (ca_file or validate_certs)" % exc)
    except (smtplib.SMTPException, OSError) as exc:
        return Attempt(False, error="%s: %s" % (type(exc).__name__, exc or "timed out"), retry=True)


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def with_retries(attempt, deadline, interval):
    """Call attempt() until it succeeds, fails for good, or `deadline` seconds pass; (last Attempt, count).

    Not _wait.wait_for: its last sleep may run past the deadline and start one more probe after it, and the
    deliveries share one overall deadline that no attempt may start after."""
    closes_at = monotonic() + deadline
    count = 0
    while True:
        outcome = attempt()
        count += 1
        if outcome.ok or not outcome.retry or closes_at - monotonic() <= interval:
            return outcome, count  # done, refused, or no time left for another attempt after the pause
        time.sleep(interval)


def monotonic():
    return time.monotonic()

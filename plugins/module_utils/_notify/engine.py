# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine of erlmcp.dr.notify: route by severity, render the phase's template, send to each channel.

run(params, check_mode, diff, warn) like every engine. Everything that can be wrong with the input (routing,
channel settings, a template field not given) raises ModuleFailure before anything is sent; a delivery that
fails is recorded in `deliveries` and counted in `failed_deliveries` with a warning, and never fails the task:
a notification must not fail or roll back a recovery.

Every channel is sent to at once, one thread each, under one overall `deadline`: retries happen inside it, an
attempt never gets more than what is left of it, and the engine returns when it passes whatever a receiver
does (a delivery still waiting then is reported as failed), so a runbook never waits longer than that on its
notifications.
"""

from __future__ import annotations

import datetime
import re
import threading

from ansible_collections.erlmcp.dr.plugins.module_utils._notify import render
from ansible_collections.erlmcp.dr.plugins.module_utils._notify import send
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure
from ansible_collections.erlmcp.dr.plugins.module_utils._common.summary import envelope

INCIDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")


def run(params, check_mode=False, diff=False, warn=None, now=None):
    """The notification, as the result dict (see the module's RETURN)."""
    warn = warn or (lambda _msg: None)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    channels_given = params.get("channels") or {}
    secrets = render.secrets_of(channels_given if isinstance(channels_given, dict) else {})
    try:
        plan = _plan(params, channels_given, now)
    except render.NotifyError as exc:
        message = render.scrub(str(exc), secrets)
        failed = {"incident_id": params.get("incident_id"), "phase": params.get("phase"),
                  "severity": params.get("severity"), "deliveries": [], "failed_deliveries": 0, "changed": False}
        failed["summary"] = summary_of(failed, check_mode, outcome="not sent: " + message,
                                       next_step="fix the input named above and run again")
        raise ModuleFailure(message, **failed) from None
    result = {
        "changed": False, "incident_id": params["incident_id"], "phase": params["phase"],
        "severity": params["severity"], "pagerduty_severity": render.PAGERDUTY_SEVERITY[params["severity"]],
        "channels": [item["name"] for item in plan["items"]], "message": plan["message"],
        "next_update": plan["ctx"].get("next_update"), "renotify_seconds": plan["renotify"],
        "deliveries": [], "failed_deliveries": 0, "sent": 0,
    }
    if not plan["items"]:
        warn("no channel is routed for %s (dr_notify_routing.%s.channels is empty): nothing was sent"
             % (params["severity"], params["severity"]))
        return scrubbed(dict(result, summary=summary_of(result, check_mode)), secrets)
    if check_mode:
        result["would_send"] = [{"channel": item["name"], "type": item["settings"]["type"],
                                 "target": render.target_of(item["settings"]),
                                 "payload": render.masked_payload(item["settings"]["type"], item["payload"])}
                                for item in plan["items"]]
        result["changed"] = True
        return scrubbed(dict(result, summary=summary_of(result, check_mode)), secrets)
    result["deliveries"], result["waited_s"] = deliver_all(plan["items"], params)
    result["deadline_s"] = budget(plan["items"], params)
    failed = [d for d in result["deliveries"] if not d["ok"]]
    result.update(failed_deliveries=len(failed), sent=len(result["deliveries"]) - len(failed),
                  changed=len(failed) < len(result["deliveries"]))
    if failed:
        warn("%d of %d notification(s) for incident %s were not delivered: %s. The run goes on; send them again "
             "with the incident_notify runbook." % (len(failed), len(result["deliveries"]), params["incident_id"],
                                                    "; ".join("%s: %s" % (d["channel"], d["error"]) for d in failed)))
    return scrubbed(dict(result, summary=summary_of(result, check_mode)), secrets)


def summary_of(result, check_mode, outcome=None, next_step=None):
    """What a runbook publishes (set_stats summary): the envelope (_summary.envelope) whose details hold the
    outcome in one sentence and what to do next. outcome/next_step, when given, say it instead (a refused input)."""
    deliveries = result.get("deliveries") or []
    delivered = [d["channel"] for d in deliveries if d["ok"]]
    missed = [d["channel"] for d in deliveries if not d["ok"]]
    would = [item["channel"] for item in result.get("would_send") or []]
    refused = outcome is not None
    if refused:
        pass
    elif check_mode:
        outcome = "check mode: would send to %s; nothing was sent" % (", ".join(would) or "no channel")
    elif not deliveries:
        outcome = "no channel is routed for %s: nothing was sent" % result.get("severity")
    elif missed:
        outcome = "NOT DELIVERED to %s (%d of %d failed)%s" % (
            ", ".join(missed), len(missed), len(deliveries),
            "; delivered to " + ", ".join(delivered) if delivered else "")
    else:
        outcome = "delivered to %s" % ", ".join(delivered)
    if next_step is not None:
        pass
    elif missed:
        next_step = ("fix what the deliveries' errors name, then send again to the channels that missed it: "
                     "-e send_to=%s" % ",".join(missed))
    elif result.get("next_update") and not check_mode:
        next_step = "send the next update by %s" % result["next_update"]
    else:
        next_step = "nothing"
    details = {"incident_id": result.get("incident_id"), "phase": result.get("phase"),
               "severity": result.get("severity"), "outcome": outcome, "delivered": delivered,
               "not_delivered": missed, "failed_deliveries": len(missed),
               "deliveries": [dict((k, d.get(k)) for k in DELIVERY_SUMMARY_KEYS) for d in deliveries],
               "waited_s": result.get("waited_s"), "deadline_s": result.get("deadline_s"),
               "next_update": result.get("next_update"), "next_step": next_step}
    # A notification changes no infrastructure: no lock, nothing to roll back, no point of no return.
    return envelope("incident_notify", action="notify", reason=result.get("phase"), completed=not (missed or refused),
                    check_mode=check_mode, did=["sent to %s" % ", ".join(delivered)] if delivered else [],
                    end={"ok": not (missed or refused),
                         "problems": ["not delivered to %s" % n for n in missed] + ([outcome] if refused else [])},
                    details=details)


def _plan(params, channels, now):
    """Everything decided before the first byte is sent: the routed channels, the message and each payload."""
    incident_id = params["incident_id"]
    if not INCIDENT_ID.match(incident_id or ""):
        raise render.NotifyError("incident_id %r is not an incident id: expected 1-100 letters, digits or '.', "
                                 "'_', ':', '-', starting with a letter or digit (it is PagerDuty's dedup_key)"
                                 % (incident_id,))
    if not isinstance(channels, dict):
        raise render.NotifyError("channels is a %s: expected a mapping of channel name to its settings "
                                 "(dr_notify_channels)" % type(channels).__name__)
    for key in ("timeout", "deadline", "retry_interval"):
        if params[key] < 0 or (key == "timeout" and params[key] == 0):
            raise render.NotifyError("%s is %s: expected a positive number of seconds (the %s option)"
                                     % (key, params[key], key))
    names, renotify = render.route(params["severity"], params.get("routing") or {}, params.get("send_to"), channels)
    checked = [(name, render.check_channel(name, channels[name])) for name in names]
    ctx = render.context(incident_id, params["phase"], params["severity"], params["title"], params.get("fields"),
                         now, renotify)
    if not checked:  # nothing to send: nothing to render either
        return {"items": [], "ctx": ctx, "message": None, "renotify": renotify}
    message = render.render(params.get("template_dir") or render.DEFAULT_TEMPLATE_DIR, params["phase"], ctx)
    action = render.pagerduty_action(params["phase"], params.get("pagerduty_action"))
    items = [{"name": name, "settings": settings, "payload": _payload(settings, message, ctx, action, now)}
             for name, settings in checked]
    return {"items": items, "ctx": ctx, "message": message, "renotify": renotify}


def _payload(settings, message, ctx, action, now):
    kind = settings["type"]
    if kind == "slack":
        return render.slack_payload(message, ctx)
    if kind == "pagerduty":
        return render.pagerduty_event(message, ctx, settings, action, now)
    if kind == "webhook":
        return render.webhook_payload(message, ctx)
    return render.email_message(message, ctx, settings)


# What the summary keeps of each delivery; started_s/ended_s (seconds from the start of the notification) show
# that the channels were sent to at once.
DELIVERY_SUMMARY_KEYS = ("channel", "ok", "status", "error", "attempts", "started_s", "ended_s")
MIN_ATTEMPT = 0.05  # seconds: an attempt started just before the deadline still gets a chance to connect


def budget(items, params):
    """Seconds the deliveries get in all: the deadline; with deadline 0 (one attempt each, no retry), the
    longest attempt's timeout."""
    if params["deadline"] > 0:
        return float(params["deadline"])
    return max([_timeout(item, params) for item in items] or [0.0])


def _timeout(item, params):
    return float(item["settings"].get("timeout") or params["timeout"])


def deliver_all(items, params):
    """Every channel at once, each in a thread, until all are done or the budget passes -> (delivery records in
    the items' order, seconds waited). A delivery still under way then is recorded as failed at the deadline;
    whatever its thread learns later is dropped (the thread is a daemon: it dies with the process)."""
    clock = send.monotonic()
    closes_at = clock + budget(items, params)
    records = [None] * len(items)
    progress = [dict(attempts=0, started_s=None) for _item in items]
    lock = threading.Lock()

    def work(index):
        record = deliver(items[index], params, clock, closes_at, progress[index])
        with lock:
            if records[index] is None:
                records[index] = record

    threads = [threading.Thread(target=work, args=(index,), name="notify-%s" % item["name"])
               for index, item in enumerate(items)]
    for thread in threads:
        thread.daemon = True
        thread.start()
    for thread in threads:
        thread.join(max(0.0, closes_at - send.monotonic()))
    with lock:
        for index, item in enumerate(items):
            if records[index] is None:
                records[index] = _cut_off(item, params, clock, progress[index])
    return records, round(send.monotonic() - clock, 3)


def deliver(item, params, clock=None, closes_at=None, progress=None):
    """One channel: attempts until delivered, refused or out of time (the shared deadline `closes_at`, on
    send.monotonic()'s clock, whose start is `clock`) -> the delivery record. `progress` counts the attempts as
    they start, for a delivery cut off at the deadline."""
    settings, payload, kind = item["settings"], item["payload"], item["settings"]["type"]
    clock = send.monotonic() if clock is None else clock
    closes_at = clock + budget([item], params) if closes_at is None else closes_at
    progress = {} if progress is None else progress
    started = datetime.datetime.now(datetime.timezone.utc)
    began = send.monotonic()
    progress["started_s"], progress["at"] = round(began - clock, 3), started.isoformat()
    send_once = _sender(kind, payload, settings)

    def attempt():
        progress["attempts"] = progress.get("attempts", 0) + 1
        left = closes_at - send.monotonic()
        progress["busy"] = True
        progress["last"] = send_once(max(MIN_ATTEMPT, min(_timeout(item, params), left)))
        progress["busy"] = False
        return progress["last"]

    retry_window = max(0.0, closes_at - send.monotonic()) if params["deadline"] > 0 else 0.0
    last, count = send.with_retries(attempt, retry_window, params["retry_interval"])
    ended = send.monotonic()
    record = {"channel": item["name"], "type": kind, "target": render.target_of(settings), "ok": last.ok,
              "status": last.status, "error": last.error, "attempts": count,
              "at": started.isoformat(), "seconds": round(ended - began, 3),
              "started_s": progress["started_s"], "ended_s": round(ended - clock, 3)}
    if not last.ok:
        record["gave_up"] = ("the receiver refused it (not retried)" if not last.retry else
                             "still failing after %d attempt(s) within the %ss deadline" % (count, params["deadline"]))
    if kind == "pagerduty" and last.response:
        record["response"] = last.response
    return record


def _sender(kind, payload, settings):
    """The channel's one attempt, as a function of the seconds it may take."""
    if kind == "slack":
        return lambda timeout: send.send_slack(payload, settings, timeout)
    if kind == "pagerduty":
        return lambda timeout: send.send_pagerduty(payload, settings, timeout, render.PAGERDUTY_EVENTS_URL)
    if kind == "webhook":
        return lambda timeout: send.send_webhook(payload, settings, timeout)
    return lambda timeout: send.send_email(payload, settings, render.email_port(settings), timeout)


def _cut_off(item, params, clock, progress):
    """The record of a delivery whose attempt was still under way when the overall deadline passed: the last
    finished attempt's answer and error, if one finished."""
    ended_s = round(send.monotonic() - clock, 3)
    started_s = progress.get("started_s")
    last = progress.get("last")
    attempts = progress.get("attempts", 0)
    deadline = budget([item], params)
    return {"channel": item["name"], "type": item["settings"]["type"], "target": render.target_of(item["settings"]),
            "ok": False, "status": last.status if last else None, "attempts": attempts,
            "error": last.error if last else "no answer before the %ss deadline (deadline)" % deadline,
            "gave_up": ("the %ss deadline passed while attempt %d was under way" % (deadline, attempts)
                        if progress.get("busy") or not last else
                        "still failing after %d attempt(s) within the %ss deadline" % (attempts, deadline)),
            "at": progress.get("at"), "seconds": None if started_s is None else round(ended_s - started_s, 3),
            "started_s": started_s, "ended_s": ended_s}


def scrubbed(value, secrets):
    """value with every secret replaced by the mask, wherever it might have slipped in (an error text, a body)."""
    if isinstance(value, dict):
        return dict((key, scrubbed(item, secrets)) for key, item in value.items())
    if isinstance(value, list):
        return [scrubbed(item, secrets) for item in value]
    if isinstance(value, str):
        return render.scrub(value, secrets)
    return value

# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Incident notifications, the pure part: the severity model, routing, channel settings, the message rendered
from the collection's Jinja2 templates and each channel's payload. No network I/O here (_notify/send.py sends).

Jinja2 is imported only when a message is rendered (it is ansible-core's own dependency on the controller,
where the action plugin runs).
"""

from __future__ import annotations

import datetime
import os

PHASES = ("declared", "update", "resolved")
# One severity model (docs/notify.md maps the seeds' P0-P3, sev1-sev4 and level_0-3 onto it).
SEVERITIES = ("sev1", "sev2", "sev3", "sev4")
PAGERDUTY_SEVERITY = {"sev1": "critical", "sev2": "error", "sev3": "warning", "sev4": "info"}
SEVERITY_LABEL = {"sev1": "SEV1 (critical)", "sev2": "SEV2 (major)", "sev3": "SEV3 (minor)", "sev4": "SEV4 (low)"}
PAGERDUTY_ACTIONS = ("trigger", "acknowledge", "resolve")
PAGERDUTY_ACTION_OF_PHASE = {"declared": "trigger", "update": "trigger", "resolved": "resolve"}
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
PHASE_EMOJI = {"declared": ":rotating_light:", "update": ":arrows_counterclockwise:", "resolved": ":white_check_mark:"}
LIST_FIELDS = ("affected", "actions_taken", "next_steps")
WEBHOOK_METHODS = ("POST", "PUT", "PATCH")
MASK = "********"
# plugins/notify_templates: two folders up from plugins/module_utils/_notify/.
DEFAULT_TEMPLATE_DIR = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "notify_templates"))

# Per channel type: option -> (required, secret). Everything else a channel gives is refused (a typo is an error).
CHANNEL_OPTIONS = {
    "slack": {"webhook_url": (True, True)},
    "pagerduty": {"routing_key": (True, True), "events_url": (False, False), "source": (False, False),
                  "component": (False, False), "group": (False, False), "class": (False, False)},
    "email": {"host": (True, False), "port": (False, False), "starttls": (False, False), "ssl": (False, False),
              "username": (False, False), "password": (False, True), "sender": (True, False), "to": (True, False),
              "cc": (False, False), "subject_prefix": (False, False)},
    "webhook": {"url": (True, True), "method": (False, False), "headers": (False, True)},
}
COMMON_CHANNEL_OPTIONS = {"type": (True, False), "timeout": (False, False), "validate_certs": (False, False),
                          "ca_file": (False, False)}


class NotifyError(Exception):
    """Invalid input found before anything was sent: the message says what, what was expected and the override."""


# ------------------------------------------------------------------------------------------- routing and channels


def route(severity, routing, explicit_channels, known_channels):
    """(channel names, re-notify seconds or None) for this severity: explicit names win over the routing."""
    if not isinstance(routing, dict):
        raise NotifyError("routing is a %s: expected a mapping of severity (%s) to {channels: [...], "
                          "renotify_minutes: N} (inventory variable dr_notify_routing, or the routing option)"
                          % (type(routing).__name__, ", ".join(SEVERITIES)))
    unknown = sorted(set(str(k) for k in routing) - set(SEVERITIES))
    if unknown:
        raise NotifyError("routing has severities %s: expected only %s (dr_notify_routing)"
                          % (", ".join(unknown), ", ".join(SEVERITIES)))
    entry = routing.get(severity)
    renotify = None
    if entry is not None:
        if not isinstance(entry, dict):
            raise NotifyError("routing for %s is a %s: expected {channels: [...], renotify_minutes: N} "
                              "(dr_notify_routing.%s)" % (severity, type(entry).__name__, severity))
        extra = sorted(set(entry) - {"channels", "renotify_minutes"})
        if extra:
            raise NotifyError("routing for %s has %s: expected only channels and renotify_minutes "
                              "(dr_notify_routing.%s)" % (severity, ", ".join(extra), severity))
        renotify = _renotify_seconds(severity, entry.get("renotify_minutes"))
    if explicit_channels:
        names = list(explicit_channels)
    elif entry is None:
        raise NotifyError("no route for %s: the routing has %s; add dr_notify_routing.%s (channels and "
                          "renotify_minutes) or name the channels (the channels option)"
                          % (severity, ", ".join(sorted(routing)) or "no severity", severity))
    else:
        names = entry.get("channels") or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise NotifyError("routing for %s: channels is %r: expected a list of channel names "
                              "(dr_notify_routing.%s.channels)" % (severity, names, severity))
    missing = [n for n in names if n not in known_channels]
    if missing:
        raise NotifyError("channel(s) %s are not defined: the channels defined are %s (dr_notify_channels)"
                          % (", ".join(missing), ", ".join(sorted(known_channels)) or "none"))
    return _unique(names), renotify


def _renotify_seconds(severity, minutes):
    if minutes is None:
        return None
    try:
        value = float(minutes)
    except (TypeError, ValueError):
        value = -1
    if value <= 0:
        raise NotifyError("routing for %s: renotify_minutes is %r: expected a positive number of minutes "
                          "(dr_notify_routing.%s.renotify_minutes)" % (severity, minutes, severity))
    return int(value * 60)


def _unique(names):
    seen, out = set(), []
    for name in names:
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


def check_channel(name, settings):
    """The channel's settings, checked (type, required options, no unknown option); raises NotifyError."""
    where = "dr_notify_channels.%s" % name
    if not isinstance(settings, dict):
        raise NotifyError("channel %s is a %s: expected a mapping with a type (%s)"
                          % (name, type(settings).__name__, where))
    kind = settings.get("type")
    if kind not in CHANNEL_OPTIONS:
        raise NotifyError("channel %s has type %r: expected one of %s (%s.type)"
                          % (name, kind, ", ".join(sorted(CHANNEL_OPTIONS)), where))
    allowed = dict(COMMON_CHANNEL_OPTIONS, **CHANNEL_OPTIONS[kind])
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise NotifyError("channel %s (%s) has option(s) %s: expected only %s (%s)"
                          % (name, kind, ", ".join(unknown), ", ".join(sorted(allowed)), where))
    missing = [opt for opt, (required, _secret) in sorted(allowed.items())
               if required and settings.get(opt) in (None, "", [])]
    if missing:
        raise NotifyError("channel %s (%s) lacks %s (%s)" % (name, kind, ", ".join(missing), where))
    if kind == "email":
        for key in ("to", "cc"):
            value = settings.get(key)
            if value is not None and not isinstance(value, (list, str)):
                raise NotifyError("channel %s: %s is a %s: expected an address or a list of addresses (%s.%s)"
                                  % (name, key, type(value).__name__, where, key))
    if kind == "webhook" and settings.get("headers") is not None and not isinstance(settings["headers"], dict):
        raise NotifyError("channel %s: headers is a %s: expected a mapping (%s.headers)"
                          % (name, type(settings["headers"]).__name__, where))
    if kind == "webhook" and str(settings.get("method") or "POST").upper() not in WEBHOOK_METHODS:
        raise NotifyError("channel %s: method is %r: expected one of %s (%s.method)"
                          % (name, settings["method"], ", ".join(WEBHOOK_METHODS), where))
    _check_number(name, where, "timeout", settings.get("timeout"), 0, None)
    _check_number(name, where, "port", settings.get("port"), 1, 65535, integer=True)
    for flag in ("validate_certs", "starttls", "ssl"):
        if settings.get(flag) is not None and not isinstance(settings[flag], bool):
            raise NotifyError("channel %s: %s is %r: expected true or false (%s.%s)"
                              % (name, flag, settings[flag], where, flag))
    return dict(settings)


def _check_number(name, where, key, value, low, high, integer=False):
    """A channel's number: a port (integer, low..high) or a timeout (seconds, above low)."""
    if value is None:
        return
    number = None
    if isinstance(value, bool):
        pass
    elif integer:
        number = value if isinstance(value, int) else (int(value) if str(value).strip().isdigit() else None)
    else:
        try:
            number = float(value)
        except (TypeError, ValueError):
            pass
    if integer:
        ok = number is not None and low <= number <= high
        expected = "an integer from %d to %d" % (low, high)
    else:
        ok = number is not None and number > low
        expected = "a positive number of seconds"
    if not ok:
        raise NotifyError("channel %s: %s is %r: expected %s (%s.%s)" % (name, key, value, expected, where, key))


def secrets_of(channels):
    """Every secret value of these channels (to scrub from any text that leaves the plugin)."""
    found = []
    for settings in channels.values():
        if not isinstance(settings, dict):
            continue
        for opt, (_required, secret) in CHANNEL_OPTIONS.get(settings.get("type"), {}).items():
            value = settings.get(opt)
            if not secret or value in (None, ""):
                continue
            if isinstance(value, dict):
                found.extend(str(v) for v in value.values() if str(v))
            else:
                found.append(str(value))
    return sorted(set(found), key=len, reverse=True)


def scrub(text, secrets):
    """text with every secret replaced by the mask."""
    text = str(text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    return text


def masked_url(url):
    """scheme://host[:port]/******** : where a secret URL points, without the token its path or query carry."""
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return MASK
    host = rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    return "%s://%s/%s" % (scheme, host, MASK)


def target_of(settings):
    """Where a channel delivers, for results and logs (never a secret)."""
    kind = settings["type"]
    if kind == "slack":
        return masked_url(settings["webhook_url"])
    if kind == "webhook":
        return masked_url(settings["url"])
    if kind == "pagerduty":
        return "%s (routing key %s)" % (settings.get("events_url") or PAGERDUTY_EVENTS_URL, MASK)
    return "smtp://%s:%s to %s" % (settings["host"], email_port(settings), ", ".join(addresses(settings.get("to"))))


def email_port(settings):
    if settings.get("port"):
        return int(settings["port"])
    return 465 if settings.get("ssl") else 587


def addresses(value):
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


# ------------------------------------------------------------------------------------------- the message


def context(incident_id, phase, severity, title, fields, now, renotify_seconds):
    """The variables a template sees: the fields as given, lists made lists, and the incident's own keys."""
    ctx = dict((key, value) for key, value in (fields or {}).items() if value is not None)  # None: not given
    for key in LIST_FIELDS:
        if isinstance(ctx.get(key), str):
            ctx[key] = [ctx[key]]
    ctx.update(incident_id=incident_id, phase=phase, severity=severity, title=title,
               severity_label=SEVERITY_LABEL[severity], pagerduty_severity=PAGERDUTY_SEVERITY[severity],
               sent_at=iso(now))
    if ctx.get("next_update") in (None, "") and renotify_seconds and phase != "resolved":
        ctx["next_update"] = iso(now + datetime.timedelta(seconds=renotify_seconds))
    if "next_update" in ctx and ctx["next_update"] in (None, ""):
        del ctx["next_update"]
    return ctx


def iso(moment):
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def render(template_dir, phase, ctx):
    """{'headline', 'body', 'text', 'template'}: the phase's template rendered; its first line is the headline.

    A field the template prints that is not given is an error listing every such field, raised before anything
    is sent. A template may make a field optional with `is defined` or `| default(...)`.
    """
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    missing = []
    env = SandboxedEnvironment(loader=jinja2.FileSystemLoader(template_dir), undefined=_recording(jinja2, missing),
                               trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False, autoescape=False)
    name = "%s.j2" % phase
    path = os.path.join(template_dir, name)
    try:
        text = env.get_template(name).render(ctx)
    except jinja2.TemplateNotFound:
        raise NotifyError("no template %s in %s: expected %s there (template_dir option, or the inventory "
                          "variable dr_notify_template_dir)" % (name, template_dir,
                                                                ", ".join("%s.j2" % p for p in PHASES))) from None
    except jinja2.TemplateSyntaxError as exc:
        raise NotifyError("template %s does not parse (line %s): %s" % (path, exc.lineno, exc.message)) from None
    except jinja2.UndefinedError as exc:
        missing.append(str(exc))
        text = ""
    except jinja2.exceptions.SecurityError as exc:
        raise NotifyError("template %s does something the sandbox refuses: %s" % (path, exc)) from None
    if missing:
        given = sorted(k for k in ctx if k not in ("incident_id", "phase", "severity", "title", "severity_label",
                                                   "pagerduty_severity", "sent_at"))
        raise NotifyError(
            "template %s refers to field(s) %s that were not given; nothing was sent. Fields given: %s. Give them "
            "(fields option; the incident_notify runbook's parameters of the same name), or make them optional in "
            "the template ({%% if x is defined %%} or | default(...))"
            % (path, ", ".join(_unique(missing)), ", ".join(given) or "none"))
    lines = text.strip("\n").split("\n")
    headline = lines[0].strip()
    if not headline:
        raise NotifyError("template %s rendered an empty first line: expected the headline there (it is the "
                          "e-mail subject and the Slack and PagerDuty summary)" % path)
    body = "\n".join(lines[1:]).strip("\n")
    return {"headline": headline, "body": body, "text": text.strip("\n"), "template": path}


def _recording(jinja2, missing):
    """An Undefined that records the name of every field the template prints, iterates or looks into."""

    class RecordingUndefined(jinja2.Undefined):
        __slots__ = ()

        def _note(self):
            name = self._undefined_name
            if name is None and self._undefined_hint:
                name = self._undefined_hint
            missing.append(str(name))

        def __str__(self):
            self._note()
            return ""

        def __iter__(self):
            self._note()
            return iter(())

        def __len__(self):
            self._note()
            return 0

        def _fail_with_undefined_error(self, *args, **kwargs):
            self._note()
            return jinja2.Undefined._fail_with_undefined_error(self, *args, **kwargs)

    return RecordingUndefined


# ------------------------------------------------------------------------------------------- payloads


def _slack_escape(text):
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(message, ctx):
    """An incoming-webhook message: `text` (the notification's fallback) and Block Kit blocks."""
    fields = [("Severity", ctx["severity_label"]), ("Status", ctx.get("status")),
              ("Affected", ", ".join(str(a) for a in ctx.get("affected") or []) or None),
              ("ETA", ctx.get("eta")), ("Next update", ctx.get("next_update"))]
    shown = [{"type": "mrkdwn", "text": "*%s*\n%s" % (label, _slack_escape(value))}
             for label, value in fields if value not in (None, "")]
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": message["headline"][:150], "emoji": True}}]
    if shown:
        blocks.append({"type": "section", "fields": shown[:10]})
    if message["body"]:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(message["body"])[:3000]}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": "%s incident %s - %s - %s" % (
        PHASE_EMOJI[ctx["phase"]], _slack_escape(ctx["incident_id"]), ctx["phase"], ctx["sent_at"])}]})
    return {"text": "%s %s" % (PHASE_EMOJI[ctx["phase"]], message["headline"]), "blocks": blocks}


def pagerduty_event(message, ctx, settings, action, now):
    """A PagerDuty Events API v2 event; dedup_key is the incident id, so resolve closes what trigger opened."""
    event = {"routing_key": settings["routing_key"], "event_action": action, "dedup_key": ctx["incident_id"]}
    if action == "trigger":
        payload = {"summary": message["headline"][:1024], "source": settings.get("source") or "erlmcp.dr",
                   "severity": ctx["pagerduty_severity"],
                   "timestamp": now.astimezone(datetime.timezone.utc).isoformat(),
                   "custom_details": details(message, ctx)}
        for key in ("component", "group", "class"):
            if settings.get(key):
                payload[key] = settings[key]
        event["payload"] = payload
    if ctx.get("postmortem_url") or ctx.get("status_page_url"):
        event["links"] = [{"href": ctx[k], "text": k.replace("_", " ")} for k in ("status_page_url", "postmortem_url")
                          if ctx.get(k)]
    return event


def details(message, ctx):
    """The structured fields every machine-readable payload carries (PagerDuty custom_details, the webhook)."""
    out = {"incident_id": ctx["incident_id"], "phase": ctx["phase"], "severity": ctx["severity"],
           "title": ctx["title"], "message": message["body"]}
    for key in ("status", "previous_status", "affected", "actions_taken", "next_steps", "eta", "next_update",
                "root_cause", "resolution_time", "prevention", "postmortem_url", "commander"):
        if ctx.get(key) not in (None, "", []):
            out[key] = ctx[key]
    return out


def webhook_payload(message, ctx):
    """The generic JSON body (status pages, chat bridges): the incident's fields and the rendered text."""
    payload = details(message, ctx)
    payload.update(headline=message["headline"], text=message["text"], sent_at=ctx["sent_at"],
                   pagerduty_severity=ctx["pagerduty_severity"], source="erlmcp.dr")
    return payload


def email_message(message, ctx, settings):
    """{'subject', 'from', 'to', 'cc', 'body'}: the e-mail to send (built into an EmailMessage by the sender)."""
    prefix = settings.get("subject_prefix")
    prefix = "[%s] " % ctx["severity"].upper() if prefix is None else (prefix + " " if prefix else "")
    return {"subject": (prefix + message["headline"])[:250], "from": settings["sender"],
            "to": addresses(settings.get("to")), "cc": addresses(settings.get("cc")), "body": message["text"] + "\n"}


def pagerduty_action(phase, explicit):
    return explicit or PAGERDUTY_ACTION_OF_PHASE[phase]


def masked_payload(kind, payload):
    """A payload as check mode and results may show it."""
    if kind == "pagerduty":
        return dict(payload, routing_key=MASK)
    return payload

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# The argument spec is here, with the documentation; the work is done on the controller by the action plugin
# plugins/action/notify.py, which validates its task against argument_spec().

from __future__ import annotations

DOCUMENTATION = r"""
module: notify
short_description: Send an incident notification to Slack, PagerDuty, e-mail and webhooks, never failing the run
version_added: "0.1.0"
description:
  - Renders the message of an incident's phase (V(declared), V(update), V(resolved)) from a Jinja2 template
    shipped in the collection (C(plugins/notify_templates/<phase>.j2), or O(template_dir)) and sends it to the
    channels the routing names for the incident's severity.
  - "Channels: a Slack incoming webhook (Block Kit blocks), the PagerDuty Events API v2 (C(trigger),
    C(acknowledge), C(resolve), with C(dedup_key) = O(incident_id) so that resolve closes the alert trigger
    opened), e-mail over SMTP (STARTTLS and AUTH), and a generic JSON webhook (status pages)."
  - One severity model, V(sev1) to V(sev4), mapped to PagerDuty's C(critical), C(error), C(warning), C(info).
  - B(A failed delivery never fails the task.) Each delivery is listed in RV(deliveries) (channel, ok, status or
    error, attempts, time), RV(failed_deliveries) counts the failed ones and a warning names them. Timeouts,
    unreachable receivers, HTTP 5xx and 429 and SMTP 4yz replies are retried until O(deadline); any other HTTP
    4xx (an invalid routing key, a revoked webhook) and SMTP 5yz are reported at once, not retried.
  - B(Every channel is sent to at once, under one overall O(deadline)) - retries happen inside it, no attempt
    gets more than what is left of it, and the task returns when it passes whatever the receivers do (a
    delivery still waiting then is reported failed), so a runbook never waits longer than O(deadline) on its
    notifications (RV(waited_s)).
  - What is wrong with the input fails the task B(before anything is sent) - a channel not defined, a channel's
    option missing or unknown, a severity without a route, a field the template prints that was not given.
  - Webhook URLs, routing keys, SMTP passwords and webhook headers are secrets - never in results, warnings or
    logs (a URL is shown as its scheme and host only).
  - Runs on the controller only; it never connects to the managed hosts.
author:
  - erlmcp.dr developers (!UNKNOWN)
options:
  incident_id:
    description:
      - The incident's id; PagerDuty's C(dedup_key). 1-100 letters, digits or C(.), C(_), C(:), C(-).
    type: str
    required: true
  phase:
    description:
      - Which message - the template C(<phase>.j2). V(declared) and V(update) trigger PagerDuty,
        V(resolved) resolves it (O(pagerduty_action) overrides).
    type: str
    required: true
    choices: [declared, update, resolved]
  severity:
    description:
      - The incident's severity, which selects the route (channels and re-notify interval).
    type: str
    required: true
    choices: [sev1, sev2, sev3, sev4]
  title:
    description:
      - The incident's title.
    type: str
    required: true
  fields:
    description:
      - The message's fields, each a variable of the template. The shipped templates print C(affected) (list),
        C(status), C(eta), C(next_update) (declared); C(affected), C(status), C(actions_taken) and
        C(next_steps) (lists), C(eta), C(next_update), optionally C(previous_status) (update); C(affected),
        C(root_cause), optionally C(status), C(resolution_time), C(actions_taken), C(prevention),
        C(postmortem_url) (resolved); C(commander) and C(impact) when given.
      - C(next_update) defaults to now plus the route's C(renotify_minutes).
      - A field the template prints that is not given fails the task before anything is sent, listing them all.
    type: dict
    default: {}
  channels:
    description:
      - The channels by name. Each is a dictionary with C(type) (V(slack), V(pagerduty), V(email),
        V(webhook)), the type's options, and optionally C(timeout) (seconds per attempt), C(validate_certs)
        (default true) and C(ca_file).
      - "slack: C(webhook_url) (secret). pagerduty: C(routing_key) (secret), C(events_url) (default
        U(https://events.pagerduty.com/v2/enqueue)), C(source) (default C(erlmcp.dr)), C(component), C(group),
        C(class). email: C(host), C(port) (default 587, 465 with C(ssl)), C(starttls) (default true), C(ssl)
        (implicit TLS), C(username), C(password) (secret), C(sender), C(to), C(cc), C(subject_prefix).
        webhook: C(url) (secret), C(method) (default POST), C(headers) (secret)."
      - Default is the inventory variable C(dr_notify_channels).
    type: dict
  routing:
    description:
      - Severity to C(channels) (a list of channel names) and C(renotify_minutes).
      - Default is the inventory variable C(dr_notify_routing).
    type: dict
  send_to:
    description:
      - Channel names to send to instead of the route's (the route's re-notify interval still applies).
    type: list
    elements: str
  template_dir:
    description:
      - Folder holding C(declared.j2), C(update.j2) and C(resolved.j2). The first line a template renders is the
        headline (e-mail subject, Slack header, PagerDuty summary), the rest the body.
      - Default is the inventory variable C(dr_notify_template_dir), else the collection's
        C(plugins/notify_templates).
    type: path
  pagerduty_action:
    description:
      - The PagerDuty event action, instead of the phase's (V(trigger) for declared and update, V(resolve) for
        resolved).
    type: str
    choices: [trigger, acknowledge, resolve]
  timeout:
    description:
      - Seconds one attempt may take (a channel's C(timeout) overrides it).
    type: float
    default: 10.0
  deadline:
    description:
      - Seconds all the deliveries get together, sent at once, retries of transient failures included; the task
        returns when it passes. V(0) tries each channel once, without retrying (each attempt then gets its
        O(timeout)).
    type: float
    default: 5.0
  retry_interval:
    description:
      - Seconds between two attempts.
    type: float
    default: 1.0
attributes:
  action:
    support: full
    description: Runs as an action plugin on the controller.
  check_mode:
    support: full
    description: Renders the message and each payload and returns them in RV(would_send) with secrets masked;
      sends nothing.
  diff_mode:
    support: none
    description: No diff.
  platform:
    support: full
    platforms: all
    description: Runs on the controller.
notes:
  - C(changed) is true when at least one channel received the notification (in check mode, when one would).
  - HTTP redirects are not followed (a POST is never replayed elsewhere); proxies come from the controller's
    environment (C(https_proxy), C(no_proxy)).
seealso:
  - module: erlmcp.dr.run_lock
"""

EXAMPLES = r"""
- name: Declare the incident (channels and routing from dr_notify_channels / dr_notify_routing)
  erlmcp.dr.notify:
    incident_id: INC-20261125-1
    phase: declared
    severity: sev1
    title: Region eu-west-1 is down
    fields:
      affected: [api, sessions]
      status: investigating
      eta: 30 minutes
  register: dr_notify

- name: Report what was not delivered (the run goes on either way)
  ansible.builtin.debug:
    msg: "{{ dr_notify.deliveries | rejectattr('ok') | list }}"
  when: dr_notify.failed_deliveries > 0

- name: Resolve it (PagerDuty closes the alert with the same dedup_key)
  erlmcp.dr.notify:
    incident_id: INC-20261125-1
    phase: resolved
    severity: sev1
    title: Region eu-west-1 is down
    fields:
      affected: [api, sessions]
      root_cause: loss of power in eu-west-1a
      resolution_time: 4 min 12 s
    channels:
      oncall:
        type: pagerduty
        routing_key: "{{ vault_pagerduty_routing_key }}"
    send_to: [oncall]
"""

RETURN = r"""
incident_id:
  description: O(incident_id).
  returned: when the parameters were valid
  type: str
  sample: INC-20261125-1
phase:
  description: O(phase).
  returned: always
  type: str
  sample: declared
severity:
  description: O(severity).
  returned: always
  type: str
  sample: sev1
pagerduty_severity:
  description: The PagerDuty severity O(severity) maps to.
  returned: success
  type: str
  sample: critical
channels:
  description: The channels routed (names).
  returned: success
  type: list
  elements: str
  sample: [pagerduty_oncall, slack_incidents]
message:
  description: The rendered message.
  returned: success
  type: dict
  contains:
    headline:
      description: The template's first line.
      type: str
    body:
      description: The rest.
      type: str
    text:
      description: The whole text (the e-mail body).
      type: str
    template:
      description: The template file rendered.
      type: str
next_update:
  description: When the next update is due (O(fields) C(next_update), else now plus the route's re-notify
    interval); none for a resolved incident without one.
  returned: success
  type: str
  sample: 2026-11-25 14:15 UTC
renotify_seconds:
  description: The route's re-notify interval in seconds, or none.
  returned: success
  type: int
  sample: 900
deliveries:
  description: One record per channel sent to (empty in check mode).
  returned: always
  type: list
  elements: dict
  contains:
    channel:
      description: The channel's name.
      type: str
    type:
      description: slack, pagerduty, email or webhook.
      type: str
    target:
      description: Where it went, without secrets (a URL's scheme and host, the SMTP server and recipients).
      type: str
    ok:
      description: Whether the receiver accepted it.
      type: bool
    status:
      description: The receiver's last answer (HTTP status, SMTP reply code), none when it never answered.
      type: int
    error:
      description: Why it failed (none when delivered).
      type: str
    attempts:
      description: How many attempts were made (started, for a delivery cut off at the deadline).
      type: int
    started_s:
      description: When the delivery started, in seconds from the start of the notification.
      type: float
    ended_s:
      description: When its outcome was known (or the deadline cut it off), in seconds from the start.
      type: float
    gave_up:
      description: Why no more attempts were made (refused, or out of time).
      type: str
    at:
      description: When the first attempt started (UTC, ISO 8601).
      type: str
    seconds:
      description: How long the delivery took, attempts and waits included.
      type: float
    response:
      description: PagerDuty's answer (its status, message, dedup_key or errors).
      type: str
  sample:
    - channel: pagerduty_oncall
      type: pagerduty
      target: https://events.pagerduty.com/v2/enqueue (routing key ********)
      ok: true
      status: 202
      error: null
      attempts: 1
      at: "2026-11-25T14:00:01.120000+00:00"
      seconds: 0.31
waited_s:
  description: Seconds the task waited for all the deliveries (at most about RV(deadline_s)).
  returned: when something was sent
  type: float
  sample: 0.42
deadline_s:
  description: The overall deadline the deliveries had, in seconds (O(deadline); with V(0), the longest timeout).
  returned: when something was sent
  type: float
  sample: 5.0
failed_deliveries:
  description: How many deliveries failed (the task does not fail; a warning names them).
  returned: always
  type: int
  sample: 0
sent:
  description: How many deliveries succeeded.
  returned: success
  type: int
  sample: 2
summary:
  description:
    - "What a runbook publishes with C(ansible.builtin.set_stats) - the outcome in one sentence (C(delivered to ...),
      C(NOT DELIVERED to ... (n of m failed)), C(check mode: would send to ...), or C(not sent: <why>) when the
      task fails on its input), the channels delivered and not delivered, each delivery in short, the next update
      and C(next_step) (the O(send_to) that retries the channels that missed it)."
  returned: always
  type: dict
  sample:
    outcome: "NOT DELIVERED to slack_incidents (1 of 2 failed); delivered to pagerduty_oncall"
    delivered: [pagerduty_oncall]
    not_delivered: [slack_incidents]
    failed_deliveries: 1
    next_step: "fix what the deliveries' errors name, then send again to the channels that missed it:
      -e send_to=slack_incidents"
would_send:
  description: In check mode, each channel's target and payload (secrets masked).
  returned: in check mode
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import controller_only  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._notify import render  # noqa: E402


def argument_spec():
    """The options of erlmcp.dr.notify (its action plugin validates the task against them)."""
    return dict(
        incident_id=dict(type="str", required=True),
        phase=dict(type="str", required=True, choices=list(render.PHASES)),
        severity=dict(type="str", required=True, choices=list(render.SEVERITIES)),
        title=dict(type="str", required=True),
        fields=dict(type="dict", default={}),
        channels=dict(type="dict", no_log=True),  # webhook URLs, routing keys and SMTP passwords
        routing=dict(type="dict"),
        send_to=dict(type="list", elements="str"),
        template_dir=dict(type="path"),
        pagerduty_action=dict(type="str", choices=list(render.PAGERDUTY_ACTIONS)),
        timeout=dict(type="float", default=10.0),
        deadline=dict(type="float", default=5.0),
        retry_interval=dict(type="float", default=1.0),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    controller_only(module, "erlmcp.dr.notify")


if __name__ == "__main__":
    main()

# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The decisions of erlmcp.dr.service_recovery, pure (no I/O; unit-tested in tests/unit/test_service_order.py).

- check_services: the services of one region as inventory data; a bad entry is refused naming the service and field.
- refusal: an unknown dependency or a cycle, named by its path ("auth -> api_gateway -> auth"), before anything
  starts (check mode refuses the same way).
- levels: the start order, derived from the dependency graph (Kahn's layering): every service of a level depends
  only on services of earlier levels, so one level's services may run in parallel. The region's database and Redis
  are level 0 (the engine checks them, never starts them): a service names no dependency on them.
- ready: which services start now: each as soon as its own dependencies are healthy.
- to_start: what a run starts, given which services answer healthy now: only those that do not (a re-run after a
  stopped run restarts no healthy service).
- outcome: healthy, failed, unconfirmed and not started, from the gates' verdicts; the first failed gate stops the
  run, so every later level is not started.
Runs on the controller (an action plugin) yet keeps to Python 3.8 syntax like every module_utils file.
"""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure

REQUIRED_FIELDS = ("name", "start_command", "health_url")
DEFAULT_START_TIMEOUT = 60.0


def check_services(services):
    """The services as given (a list of dicts), normalized: depends_on a list of names, start_timeout a float.
    Refuses (ModuleFailure) a missing field, a duplicate name or a deadline that is not above 0."""
    if not services:
        raise ModuleFailure("no service to recover: expected at least one entry in services (the inventory's "
                            "`services` group, hosts with service_name and dr_region)")
    seen = {}
    for index, service in enumerate(services):
        if not isinstance(service, dict):
            raise ModuleFailure("services[%d] is %r: expected a dict with %s"
                                % (index, service, ", ".join(REQUIRED_FIELDS)))
        missing = [field for field in REQUIRED_FIELDS if not service.get(field)]
        if missing:
            raise ModuleFailure("service %s has no %s: expected each service to name %s (inventory host vars "
                                "service_name, service_start_command, service_health_url)"
                                % (service.get("name") or "#%d" % index, ", ".join(missing),
                                   ", ".join(REQUIRED_FIELDS)))
        name = str(service["name"])
        if name in seen:
            raise ModuleFailure("service %s is listed twice in one region: expected unique names (service_name)"
                                % name)
        seen[name] = _normalized(service)
    return [seen[name] for name in seen]


def _normalized(service):
    depends_on = service.get("depends_on") or []
    if isinstance(depends_on, str):
        depends_on = [part.strip() for part in depends_on.split(",") if part.strip()]
    command = service["start_command"]
    if isinstance(command, str):
        raise ModuleFailure("service %s: start_command is the string %r: expected a list of arguments (no shell), "
                            "e.g. [systemctl, start, %s] (service_start_command)" % (service["name"], command,
                                                                                     service["name"]))
    deadline = service.get("start_timeout")
    deadline = DEFAULT_START_TIMEOUT if deadline in (None, "") else float(deadline)
    if deadline <= 0:
        raise ModuleFailure("service %s: start_timeout is %s: expected seconds above 0 (service_start_timeout)"
                            % (service["name"], deadline))
    return dict(service, name=str(service["name"]), depends_on=[str(dep) for dep in depends_on],
                start_command=[str(arg) for arg in command], start_timeout=deadline)


def refusal(services):
    """Why the graph cannot give an order (a sentence naming the path), or None."""
    names = set(service["name"] for service in services)
    for service in services:
        unknown = [dep for dep in service["depends_on"] if dep not in names]
        if unknown:
            return ("service %s depends on %s, which is not a service of this region (known: %s): fix "
                    "service_depends_on, or add the service to the inventory's services group"
                    % (service["name"], ", ".join(unknown), ", ".join(sorted(names))))
    cycle = find_cycle(services)
    if cycle:
        return ("the services' dependencies form a cycle: %s; no start order exists (fix service_depends_on)"
                % " -> ".join(cycle))
    return None


def find_cycle(services):
    """A dependency cycle as a path that returns to its first name (["auth", "api_gateway", "auth"]), or None.
    Depth-first from each service in the given order, dependencies in their declared order: the same inventory
    always names the same path."""
    graph = dict((service["name"], service["depends_on"]) for service in services)
    state = {}  # name -> "open" while on the current path, "done" once every path from it is known to end

    def visit(name, path):
        state[name] = "open"
        path.append(name)
        for dep in graph.get(name, []):
            if state.get(dep) == "open":
                return path[path.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep, path)
                if found:
                    return found
        path.pop()
        state[name] = "done"
        return None

    for service in services:
        if service["name"] not in state:
            found = visit(service["name"], [])
            if found:
                return found
    return None


def levels(services):
    """The start levels, first to last, each a list of names in the inventory's order. Refuses a bad graph."""
    problem = refusal(services)
    if problem:
        raise ModuleFailure(problem)
    remaining = dict((service["name"], set(service["depends_on"])) for service in services)
    order = [service["name"] for service in services]
    placed = set()
    result = []
    while remaining:
        level = [name for name in order if name in remaining and remaining[name] <= placed]
        result.append(level)
        placed.update(level)
        for name in level:
            del remaining[name]
    return result


def to_start(services, healthy_now):
    """The names a run starts: every service not healthy now, in the services' order."""
    return [service["name"] for service in services if service["name"] not in set(healthy_now)]


def ready(services, healthy, launched):
    """The services to start now: not launched yet, every dependency healthy. A service starts as soon as its own
    dependencies answer, not when its whole level has: the run then takes its critical path, not the sum of each
    level's slowest service (docs/design.md, Service recovery order)."""
    healthy, launched = set(healthy), set(launched)
    return [service["name"] for service in services
            if service["name"] not in launched and all(dep in healthy for dep in service["depends_on"])]


def plan(services, healthy_now):
    """What a run will do (check mode shows it): the levels, each service's `healthy` (answers now) or `start`."""
    order = levels(services)
    starting = set(to_start(services, healthy_now))
    return dict(levels=order,
                actions=dict((name, "start" if name in starting else "healthy") for level in order for name in level),
                will_start=[name for level in order for name in level if name in starting])


def outcome(order, verdicts):
    """The report from the gates' verdicts: verdicts maps a name to healthy | failed | unconfirmed (started, its gate
    abandoned when a sibling's gate failed); every name without a verdict was not started."""
    found = dict(healthy=[], failed=[], unconfirmed=[], not_started=[])
    for level in order:
        for name in level:
            found[verdicts.get(name, "not_started")].append(name)
    found["ok"] = not (found["failed"] or found["unconfirmed"] or found["not_started"])
    return found


# ---------------------------------------------------------------- inputs from the inventory, the summary


def region_inputs(service_hosts, postgres_hosts, redis_hosts, hostvars, region):
    """What the engine gets for one region, from the inventory: its services (hosts of the `services` group with
    this dr_region), its database and Redis nodes (level 0) and the run lock's key. Refuses an empty region,
    naming the regions that have services."""
    def in_region(hosts):
        return [host for host in hosts or [] if hostvars[host].get("dr_region") == region]

    found = sorted(set(hostvars[host].get("dr_region") for host in service_hosts or []) - set([None]))
    mine = in_region(service_hosts)
    if not mine:
        raise ModuleFailure("region %s has no service: expected hosts of the inventory's services group with "
                            "dr_region %s (region); regions with services: %s"
                            % (region, region, ", ".join(found) or "none"))
    services = [dict(name=hostvars[host].get("service_name") or host,
                     start_command=hostvars[host].get("service_start_command"),
                     health_url=hostvars[host].get("service_health_url"),
                     depends_on=hostvars[host].get("service_depends_on") or [],
                     start_timeout=hostvars[host].get("service_start_timeout", DEFAULT_START_TIMEOUT))
                for host in mine]
    backing = ([dict(name=host, kind="postgres", host=hostvars[host]["pg_host"], port=int(hostvars[host]["pg_port"]))
                for host in in_region(postgres_hosts)]
               + [dict(name=host, kind="redis", host=hostvars[host]["redis_host"],
                       port=int(hostvars[host]["redis_port"])) for host in in_region(redis_hosts)])
    return dict(services=services, backing=backing, lock_key=lock_key(region, services))


def lock_key(region, services):
    """One run at a time per region's set of services (two regions recover at once)."""
    return "services:%s:%s" % (region, ",".join(sorted(str(s["name"]) for s in services)))


def summary(result, inputs, completed, check_mode, meta=None):
    """The envelope (module_utils/_common/summary.py) around the run's facts: healthy, failed, unconfirmed, not started.
    A run refused before the engine ran (a cycle, level 0 down) reports every service not started."""
    from ansible_collections.erlmcp.dr.plugins.module_utils._common.summary import confirmation, envelope

    result = result or {}
    inputs = inputs or {}
    names = [service["name"] for service in inputs.get("services") or []]
    keys = ("region", "levels", "services", "backing", "started", "healthy", "unconfirmed", "not_started",
            "will_start")
    details = dict((key, result.get(key)) for key in keys)
    # The module returns the list as failed_services (its `failed` is Ansible's boolean); the summary says failed.
    details["failed"] = result.get("failed_services") or []
    if details["healthy"] is None:  # refused before the engine's report: nothing was started
        details.update(healthy=[], failed=[], unconfirmed=[], started=[],
                       not_started=[] if check_mode else names, will_start=[], levels=[], services=[], backing=[])
    details["refusal"] = result.get("msg") if result.get("failed") else None
    problems = ([] if not result.get("failed") else [result.get("msg") or "the run failed"])
    started = details["started"] or []
    did = ["started %s (each gated on its health check)" % ", ".join(started)] if started else []
    return envelope("service_recovery", action="plan" if check_mode else "recover",
                    reason=details["refusal"], completed=bool(completed), check_mode=bool(check_mode), did=did,
                    end=None if check_mode else dict(ok=bool(result.get("ok")) and not problems, problems=problems),
                    lock_key=inputs.get("lock_key"), details=details,
                    plan=confirmation(will_change=["start %s" % name for name in details["will_start"] or []],
                                      guard="the run lock %s" % inputs.get("lock_key")))

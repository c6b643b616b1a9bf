"""The runbook catalog: every playbook under playbooks/ whose first play declares `vars.runbook`.

The playbook is the single source of truth; this module only reads it (never runs it):
metadata from the first play's `runbook:` mapping, targets from each play's `hosts`,
and an outline of the steps (tasks, blocks, roles) in the order Ansible runs them.
"""

from __future__ import annotations

import copy
import difflib
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import yaml

from erlmcp_dr import paths
from erlmcp_dr.errors import RunbookError, UnknownRunbook

PLAYBOOKS_ENV = "ERLMCP_DR_PLAYBOOKS"

log = logging.getLogger(__name__)

# Keys of a task that are keywords, not the module/action being called.
_TASK_KEYWORDS = frozenset(
    {
        "action", "any_errors_fatal", "args", "async", "become", "become_exe", "become_flags",
        "become_method", "become_user", "changed_when", "check_mode", "collections", "connection",
        "debugger", "delay", "delegate_facts", "delegate_to", "diff", "environment", "failed_when",
        "ignore_errors", "ignore_unreachable", "listen", "local_action", "loop", "loop_control",
        "module_defaults", "name", "no_log", "notify", "poll", "port", "register", "remote_user",
        "retries", "run_once", "tags", "throttle", "timeout", "until", "vars", "when",
    }
)
# The sections of a play, in the order Ansible runs them.
_PLAY_SECTIONS = ("pre_tasks", "roles", "tasks", "post_tasks")


@dataclass(frozen=True)
class StepOutline:
    """One entry of a runbook's outline: `depth` 0 is a play's top level, blocks nest deeper."""

    depth: int
    name: str
    kind: str = "task"  # task | block | rescue | always | role | import_playbook

    def indented(self, unit: str = "  ") -> str:
        return f"{unit * self.depth}{self.name}"


@dataclass(frozen=True)
class ParameterView:
    """One runbook parameter as every reader shows it: `runbook show`, the generated pages, the AWX
    survey and parameter errors all read the spec through this, never on their own."""

    name: str
    type: str
    elements: Optional[str]
    required: bool
    secret: bool
    default: Any  # None when there is none (renderers never show a secret's)
    choices: List[Any]
    minimum: Any
    maximum: Any
    description: str

    @classmethod
    def of(cls, name: str, option: Mapping[str, Any]) -> ParameterView:
        return cls(name=name, type=str(option.get("type") or "str"), elements=option.get("elements"),
                   required=bool(option.get("required")), secret=bool(option.get("no_log")),
                   default=option.get("default"),
                   choices=list(option.get("choices") or []), minimum=option.get("min"), maximum=option.get("max"),
                   description=flat_description(option))

    @property
    def type_label(self) -> str:
        """`int`, `list[str]`, `str (secret)`."""
        kind = f"{self.type}[{self.elements}]" if self.elements else self.type
        return kind + (" (secret)" if self.secret else "")


def flat_description(option: Mapping[str, Any]) -> str:
    """A spec option's description (a string or a list of them) as one line."""
    description = option.get("description") or ""
    if isinstance(description, list):
        description = " ".join(map(str, description))
    return " ".join(str(description).split())


@dataclass
class Runbook:
    name: str
    path: Path
    title: str
    summary: str
    tier: Optional[int]
    rto_seconds: Optional[int]
    rpo_seconds: Optional[int]
    confirm: bool
    parameters: Dict[str, Dict[str, Any]]
    steps: List[StepOutline] = field(default_factory=list)
    targets: List[str] = field(default_factory=list)
    # The step after which there is no going back (e.g. the promotion): a task name or an action such as
    # erlmcp.dr.pg_promote, from `runbook.point_of_no_return`; reports mark where the run passed it.
    point_of_no_return: Optional[str] = None
    # A composed runbook's steps as data (`runbook.workflow`; src/erlmcp_dr/compose/spec.py checks it): the runbook
    # is then run by erlmcp_dr.compose, each step a child run of another runbook.
    workflow: Optional[Dict[str, Any]] = None

    def parameter_views(self) -> List[ParameterView]:
        return [ParameterView.of(name, option) for name, option in self.parameters.items()]

    @property
    def required_parameters(self) -> List[str]:
        return [name for name, spec in self.parameters.items() if spec.get("required")]

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


def playbooks_dir(explicit: Optional[os.PathLike | str] = None) -> Path:
    """Where runbooks are read from: the argument, else $ERLMCP_DR_PLAYBOOKS, else <collection>/playbooks."""
    if explicit is not None:
        return Path(explicit).resolve()
    configured = os.environ.get(PLAYBOOKS_ENV)
    if configured:
        return Path(configured).resolve()
    return paths.collection_root() / "playbooks"


def discover(directory: Optional[os.PathLike | str] = None) -> Dict[str, Runbook]:
    """All runbooks, by name. Playbooks that cannot be read are skipped with a warning."""
    found: Dict[str, Runbook] = {}
    for path in sorted(playbooks_dir(directory).glob("*.yml")):
        try:
            runbook = parse_playbook(path)
        except RunbookError as exc:
            log.warning("skipping %s: %s", path, exc)
            continue
        if runbook is not None:
            found[runbook.name] = runbook
    return found


def names(directory: Optional[os.PathLike | str] = None) -> List[str]:
    return sorted(discover(directory))


def load(name: str, directory: Optional[os.PathLike | str] = None) -> Runbook:
    """One runbook by name (`database_failover`, `database_failover.yml` also accepted)."""
    base = playbooks_dir(directory)
    stem = name[:-4] if name.endswith(".yml") else name
    path = base / f"{stem}.yml"
    if "/" not in stem and stem not in ("", ".", "..") and path.is_file():
        runbook = parse_playbook(path)  # a broken runbook says why instead of "unknown"
        if runbook is not None:
            return runbook
    known = names(base)
    close = difflib.get_close_matches(stem, known, n=1)
    raise UnknownRunbook(name, known, close[0] if close else None)


def parse_playbook(path: Path) -> Optional[Runbook]:
    """The runbook a playbook file declares, or None when its first play has no `vars.runbook`."""
    plays = _read_yaml(path)
    if not isinstance(plays, list) or not plays or not isinstance(plays[0], dict):
        return None
    first_vars = plays[0].get("vars")
    if not isinstance(first_vars, dict) or "runbook" not in first_vars:
        return None
    meta = first_vars["runbook"]
    if not isinstance(meta, dict):
        raise RunbookError(f"{path}: vars.runbook must be a mapping, got {type(meta).__name__}")
    return Runbook(
        name=path.stem,
        path=path.resolve(),
        title=str(meta.get("title") or plays[0].get("name") or path.stem),
        summary=str(meta.get("summary") or "").strip(),
        tier=_optional_int(path, meta, "tier"),
        rto_seconds=_optional_int(path, meta, "rto_seconds"),
        rpo_seconds=_optional_int(path, meta, "rpo_seconds"),
        confirm=_confirm(path, meta),
        parameters=_parameters(path, meta),
        steps=workflow_outline(meta["workflow"]) if isinstance(meta.get("workflow"), dict) else outline(plays),
        targets=_targets(plays),
        point_of_no_return=_optional_text(path, meta, "point_of_no_return"),
        workflow=meta.get("workflow") if isinstance(meta.get("workflow"), dict) else None,
    )


def workflow_outline(workflow: Mapping[str, Any]) -> List[StepOutline]:
    """A composed runbook's steps as `runbook show` and its page list them: what each runs, what undoes it, and
    where the point of no return is."""
    steps: List[StepOutline] = []
    for step in workflow.get("steps") or []:
        if not isinstance(step, dict):
            continue
        runs = step.get("runbook") or f"built-in {step.get('action')}"
        label = f"{step.get('id')}: {_text(step.get('title')) or step.get('id')} ({runs})"
        if isinstance(step.get("modes"), list):  # chosen by the runbook's mode parameter (compose/spec.py)
            label += f" [mode {', '.join(map(str, step['modes']))}]"
        if step.get("point_of_no_return"):
            label += " - POINT OF NO RETURN: after it the run only rolls forward"
        if step.get("background") is True:  # compose/engine.py: the steps after it do not wait for it
            label += " - in the background: the next steps start at once"
        if isinstance(step.get("after"), list) and step["after"]:
            label += f" - once {', '.join(map(str, step['after']))} ended"
        steps.append(StepOutline(0, label, "task"))
        undo = step.get("undo")
        if isinstance(undo, dict):
            steps.append(StepOutline(1, f"undo: {undo.get('runbook') or 'built-in ' + str(undo.get('action'))}",
                                     "rescue"))
    return steps


def outline(plays: List[Any]) -> List[StepOutline]:
    """The steps of all plays in run order: pre_tasks, roles, tasks, post_tasks; blocks nested."""
    steps: List[StepOutline] = []
    for play in plays:
        if not isinstance(play, dict):
            continue
        imported = play.get("import_playbook") or play.get("ansible.builtin.import_playbook")
        if imported:
            steps.append(StepOutline(0, f"import playbook {imported}", "import_playbook"))
            continue
        for section in _PLAY_SECTIONS:
            entries = play.get(section) or []
            if section == "roles":
                steps.extend(StepOutline(0, f"role {_role_name(role)}", "role") for role in entries)
            else:
                steps.extend(_task_outline(entries, 0))
    return steps


def _task_outline(entries: List[Any], depth: int) -> List[StepOutline]:
    steps: List[StepOutline] = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        if "block" in entry:
            label = _text(entry.get("name")) or "block"
            steps.append(StepOutline(depth, label, "block"))
            steps.extend(_task_outline(entry.get("block") or [], depth + 1))
            for section, prefix in (("rescue", "if it fails"), ("always", "always, after")):
                if entry.get(section):
                    steps.append(StepOutline(depth, f"{prefix}: {label}", section))
                    steps.extend(_task_outline(entry[section], depth + 1))
        else:
            steps.append(StepOutline(depth, task_label(entry), "task"))
    return steps


def task_label(task: Mapping[str, Any]) -> str:
    """A task's name, or for an unnamed task its action and main argument."""
    name = _text(task.get("name"))
    if name:
        return name
    for key, value in task.items():
        if key in _TASK_KEYWORDS or key.startswith("with_"):
            continue
        argument = value.get("name") or value.get("file") if isinstance(value, dict) else value
        return f"{key} {argument}" if isinstance(argument, str) and len(argument) < 60 else key
    for key in ("action", "local_action"):
        if key in task:
            return _text(task[key]).split(" ", 1)[0] or key
    return "(unnamed task)"


def _role_name(role: Any) -> str:
    if isinstance(role, dict):
        return _text(role.get("role") or role.get("name")) or "(unnamed role)"
    return _text(role)


def _targets(plays: List[Any]) -> List[str]:
    targets: List[str] = []
    for play in plays:
        if not isinstance(play, dict) or "hosts" not in play:
            continue
        hosts = play["hosts"]
        pattern = ",".join(map(str, hosts)) if isinstance(hosts, list) else _text(hosts)
        if pattern and pattern not in targets:
            targets.append(pattern)
    return targets


def _parameters(path: Path, meta: Mapping[str, Any]) -> Dict[str, Dict[str, Any]]:
    spec = meta.get("parameters") or {}
    if not isinstance(spec, dict):
        raise RunbookError(f"{path}: runbook.parameters must be an argument spec mapping, got {type(spec).__name__}")
    for name, option in spec.items():
        if not isinstance(option, dict):
            raise RunbookError(f"{path}: runbook.parameters.{name} must be a mapping (type, description, ...)")
    return {str(name): dict(option) for name, option in spec.items()}


def _confirm(path: Path, meta: Mapping[str, Any]) -> bool:
    value = meta.get("confirm", True)  # a runbook that does not say is treated as one that changes things
    if not isinstance(value, bool):
        raise RunbookError(f"{path}: runbook.confirm must be true or false, got {value!r}")
    return value


def _optional_int(path: Path, meta: Mapping[str, Any], key: str) -> Optional[int]:
    value = meta.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RunbookError(f"{path}: runbook.{key} must be a number, got {value!r}")
    return int(value)


def _optional_text(path: Path, meta: Mapping[str, Any], key: str) -> Optional[str]:
    value = meta.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise RunbookError(f"{path}: runbook.{key} must be a task name or an action (e.g. erlmcp.dr.pg_promote), "
                           f"got {value!r}")
    return value.strip()


def _text(value: Any) -> str:
    if value is None:
        return ""
    return " ".join(str(value).split()) if isinstance(value, str) else str(value)


def _read_yaml(path: Path) -> Any:
    """Reads a playbook as plain Python types, as ansible-core 2.19's loader reads it (!unsafe, !vault).

    The fast way (read_plain_yaml: PyYAML's C loader, about 10 ms) serves every well-formed playbook without a
    duplicate key; anything else (a syntax error, a duplicate key, an unknown tag) is read by ansible-core's own
    `from_yaml` (about 200 ms with its imports), whose result or error, with its line and column, is the answer.
    test_catalog.py checks that both ways read every shipped playbook the same.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RunbookError(f"cannot read playbook {path}: {exc}") from exc
    try:
        return read_plain_yaml(text)
    except (yaml.YAMLError, ValueError, TypeError, RecursionError):
        return _read_ansible_yaml(path, text)


def _read_ansible_yaml(path: Path, text: str) -> Any:
    """Parses with Ansible's own loader (understands !unsafe and !vault), returns plain Python types.

    `from_yaml` is ansible-core's public parsing entry point (same signature from 2.16 to 2.21);
    its loader tags every value with where it came from, and `!vault` values stay encrypted.
    """
    from ansible.errors import AnsibleError
    from ansible.parsing.utils.yaml import from_yaml

    try:
        data = from_yaml(text, file_name=str(path), show_content=False)
    except AnsibleError as exc:
        raise RunbookError(f"cannot read playbook {path}{_where(exc)}: {exc}") from exc
    return _plain(data)


_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _PlainLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """YAML 1.1 as Ansible reads it, to plain values: `!unsafe X` is X as if untagged (2.19 resolves the tag again;
    trust does not matter here), `!vault`/`!vault-encrypted` is the text "!vault" (never decrypted). A duplicate
    key raises: what it means is ansible-core's setting (DUPLICATE_YAML_DICT_KEY), so that file goes the slow way."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            keys = [self.construct_object(key, deep=True) for key, _ in node.value]
            if len(keys) != len({repr(key) for key in keys}):
                raise yaml.constructor.ConstructorError(None, None, "duplicate mapping key", node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _construct_unsafe(loader: _PlainLoader, node: Any) -> Any:
    copied = copy.copy(node)
    copied.tag = loader.resolve(type(node), node.value, (True, False))
    return loader.construct_object(copied, deep=True)


def _construct_vault(loader: _PlainLoader, node: Any) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise yaml.constructor.ConstructorError(None, None, f"the {node.tag!r} tag requires a string value",
                                                node.start_mark)
    return "!vault"


_PlainLoader.add_constructor("!unsafe", _construct_unsafe)
_PlainLoader.add_constructor("!vault", _construct_vault)
_PlainLoader.add_constructor("!vault-encrypted", _construct_vault)


def read_plain_yaml(text: str) -> Any:
    """`text` read by _PlainLoader; raises yaml.YAMLError where ansible-core's loader has to decide."""
    return _plain(yaml.load(text, Loader=_PlainLoader))  # noqa: S506 - a safe loader with two tags added


def _where(exc: Exception) -> str:
    """`, line N column M` when ansible-core's error carries the position (2.19+: an Origin in `obj`)."""
    origin = getattr(exc, "obj", None)
    line = getattr(origin, "line_num", None)
    if not isinstance(line, int):
        return ""
    column = getattr(origin, "col_num", None)
    return f", line {line}" + (f" column {column}" if isinstance(column, int) else "")


# Encrypted values: 2.19+ EncryptedString, older cores AnsibleVaultEncryptedUnicode. Converting
# one to str would decrypt it, so they are matched by type name before any conversion.
_VAULT_TYPES = frozenset({"EncryptedString", "AnsibleVaultEncryptedUnicode"})


def _plain(value: Any) -> Any:
    """A copy made only of dict, list, str, int, float, bool and None (2.19's loader returns tagged
    subclasses of them, which carry their origin and template trust)."""
    if type(value).__name__ in _VAULT_TYPES:
        return "!vault"  # never decrypted here
    if isinstance(value, dict):
        return {_plain(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)

"""Compiled templates shared by a zygote's runs (issue 19, docs/speed-warm.md "Round 16").

ansible-core 2.19 compiles a template's text again each time it evaluates it, with a new Jinja environment per
templating engine, and each task runs in a worker forked for that task: a worker never sees what the one before it
compiled. Measured on the lab: about 0.5 ms of CPU per template, 94 ms of one switchover's workers, a tenth of the
run's CPU, for the same few hundred texts from the collection's playbooks and roles every time.

What is shared is the Python code object Jinja compiles a text to, never a Template (a Template keeps the environment
that made it: its filters, its globals). A code object is immutable and holds no environment: a cache hit builds a
new Template from it in the asking environment, as Jinja's own `from_string` does after it compiles.

The key is the text plus every setting of the environment that the compilation reads (its class, the lexer's
delimiters and whitespace settings, the extensions, `finalize`, `autoescape`, `optimized`, `is_async`), ansible-core's
`ALLOW_EMBEDDED_TEMPLATES` and the compile-time `escape_backslashes`. The generated code also depends on whether
each filter and test the text names takes the context, the eval context or the environment as its first argument:
each entry records those, and a hit is used only when the asking environment's own plugins (looked up as the
compilation would look them up) say the same; otherwise the text is compiled afresh. A text that fails to compile is
never cached: its error comes from a real compilation each time.

Installed only in the playbook zygote (zygote.preload), so a cold run is ansible-core as shipped. The zygote fills
the cache, while it waits for runs, with the templates and conditionals of the collection's playbooks and roles
(texts from files on disk: nothing from a run's input stays in the zygote); every warm process (the forked
ansible-playbook, its workers) also keeps what it compiles itself, so a worker inherits what its ansible-playbook
compiled before forking it. With another ansible-core or Jinja whose internals differ, install() changes nothing.
"""

from __future__ import annotations

import contextvars
import os
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Set, Tuple

MAX_ENTRIES = 4096  # a bound on the memory of one process's cache (the collection has a few hundred texts)
# Keys whose string values ansible-core evaluates as expressions (conditionals), not as templates.
CONDITIONAL_KEYS = frozenset({"when", "failed_when", "changed_when", "until", "that"})

Dependency = Tuple[str, str, Any]  # ("filter" or "test", name, the pass-argument kind Jinja's code generator saw)
Entry = Tuple[Any, Tuple[Dependency, ...]]  # (code object, dependencies)

_entries: Dict[Tuple[Any, ...], Entry] = {}
# The key an expression's compilation is for: Jinja compiles an expression as a node tree, not as text.
_expression_key: contextvars.ContextVar[Optional[Tuple[str, str]]] = contextvars.ContextVar(
    "erlmcp_dr_expression_key", default=None)
# The filters and tests the code generator was given, recorded while a compilation that will be cached runs.
_seen_names: contextvars.ContextVar[Optional[List[Tuple[str, str]]]] = contextvars.ContextVar(
    "erlmcp_dr_seen_names", default=None)
_installed: Dict[str, Any] = {}


def install() -> bool:
    """Wraps AnsibleEnvironment's compile, compile_expression and _generate with the cache. Returns False (and
    changes nothing) when this ansible-core or Jinja is not the one these wrappers were written against."""
    if _installed:
        return True
    try:
        from ansible._internal._templating import _jinja_bits, _jinja_common
        from jinja2 import nodes
        from jinja2.environment import TemplateExpression
        from jinja2.utils import _PassArg
    except ImportError:
        return False
    environment = getattr(_jinja_bits, "AnsibleEnvironment", None)
    compile_context = getattr(_jinja_bits, "_TemplateCompileContext", None)
    override_fields = getattr(_jinja_bits, "_TEMPLATE_OVERRIDE_FIELD_NAMES", None)
    config = getattr(_jinja_common, "_TemplateConfig", None)
    needed = (environment, compile_context, override_fields, config, getattr(_PassArg, "from_obj", None))
    if any(part is None for part in needed) or not all(
            callable(getattr(environment, name, None)) for name in ("compile", "compile_expression", "_generate")):
        return False
    _installed.update(environment=environment, compile_context=compile_context, override_fields=override_fields,
                      config=config, nodes=nodes, expression_class=TemplateExpression, pass_arg=_PassArg,
                      compile=environment.compile, compile_expression=environment.compile_expression,
                      generate=environment._generate)
    environment.compile = _compile
    environment.compile_expression = _compile_expression
    environment._generate = _generate
    return True


def settings_key(env: Any) -> Tuple[Any, ...]:
    """What, besides the text, decides the code Jinja generates in this environment now."""
    compile_context = _installed["compile_context"].current(optional=True)
    return (
        type(env),
        tuple(getattr(env, name) for name in _installed["override_fields"]),
        tuple(sorted(env.extensions)),
        env.finalize, env.autoescape, env.optimized, env.is_async,
        _installed["config"].allow_embedded_templates,
        None if compile_context is None else compile_context.escape_backslashes,
    )


def _debugging(env: Any) -> bool:
    # ansible-core's template debugging writes each compilation's source to a file: left to it.
    return bool(getattr(env, "_debuggable_template_source", False))


def _cacheable(env: Any, name: Any, filename: Any, raw: bool, defer_init: bool) -> bool:
    # A named template (a file, an include) keeps its name and filename in its code: only anonymous texts are shared.
    return name is None and filename is None and not raw and not defer_init and not _debugging(env)


def _compile(env: Any, source: Any, name: Any = None, filename: Any = None, raw: bool = False,
             defer_init: bool = False) -> Any:
    original = _installed["compile"]
    if not _cacheable(env, name, filename, raw, defer_init):
        return original(env, source, name, filename, raw, defer_init)
    if isinstance(source, str):
        text_key: Optional[Tuple[str, str]] = ("template", str.__str__(source))
    else:
        text_key = _expression_key.get()
        _expression_key.set(None)  # for this tree only: a nested compilation is not the expression
    if text_key is None:
        return original(env, source, name, filename, raw, defer_init)
    key = (*text_key, *settings_key(env))
    entry = _entries.get(key)
    if entry is not None and _same_dependencies(env, entry[1]):
        return entry[0]
    seen: List[Tuple[str, str]] = []
    token = _seen_names.set(seen)
    try:
        code = original(env, source, name, filename, raw, defer_init)
    finally:
        _seen_names.reset(token)
    if len(_entries) < MAX_ENTRIES or key in _entries:
        _entries[key] = (code, tuple((kind, dep, _pass_kind(env, kind, dep)) for kind, dep in dict.fromkeys(seen)))
    return code


def _compile_expression(env: Any, source: str, undefined_to_none: bool = True) -> Any:
    cacheable = isinstance(source, str) and not _debugging(env)
    key = ("expression", str.__str__(source), *settings_key(env)) if cacheable else None
    entry = _entries.get(key) if key is not None else None
    if entry is not None and _same_dependencies(env, entry[1]):
        template = env.template_class.from_code(env, entry[0], env.make_globals(None), None)
        return _installed["expression_class"](template, undefined_to_none)
    token = _expression_key.set(None if key is None else ("expression", key[1]))
    try:
        return _installed["compile_expression"](env, source, undefined_to_none)
    finally:
        _expression_key.reset(token)


def _generate(env: Any, source: Any, *args: Any, **kwargs: Any) -> Any:
    seen = _seen_names.get()
    if seen is not None:
        nodes = _installed["nodes"]
        seen.extend(("filter", node.name) for node in source.find_all(nodes.Filter))
        seen.extend(("test", node.name) for node in source.find_all(nodes.Test))
    return _installed["generate"](env, source, *args, **kwargs)


def _pass_kind(env: Any, kind: str, name: str) -> Any:
    """What Jinja's code generator reads of a filter or test: which argument it passes first (none, the context,
    the eval context, the environment), looked up as the generator looks it up."""
    plugins = env.filters if kind == "filter" else env.tests
    return _installed["pass_arg"].from_obj(plugins.get(name))


def _same_dependencies(env: Any, dependencies: Iterable[Dependency]) -> bool:
    return all(_pass_kind(env, kind, name) == recorded for kind, name, recorded in dependencies)


def collection_folders() -> List[str]:
    """Where this collection's (erlmcp.dr's) playbooks and roles are, as the process imports it; [] when it cannot."""
    try:
        from ansible_collections.erlmcp.dr import __path__ as collection_path
    except ImportError:
        return []
    root = list(collection_path)[0]
    return [os.path.join(root, "playbooks"), os.path.join(root, "roles")]


def collection_texts(folders: Iterable[str]) -> Tuple[List[str], List[str]]:
    """The template texts and the conditionals in the YAML files under `folders` (a collection's playbooks and
    roles), each once, in a stable order. A file that does not parse is skipped: the run reports it."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    templates: Dict[str, None] = {}
    conditionals: Dict[str, None] = {}
    for path in _yaml_files(folders):
        try:
            with open(path, encoding="utf-8") as stream:
                document = yaml.load(stream, Loader=loader)  # noqa: S506 - a safe loader
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        for key, text in _strings(document, None):
            if key in CONDITIONAL_KEYS:
                conditionals[text.strip()] = None
            elif "{{" in text or "{%" in text:
                templates[text] = None
    return list(templates), [text for text in conditionals if text]


def _yaml_files(folders: Iterable[str]) -> Iterator[str]:
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            yield from (os.path.join(root, name) for name in sorted(files) if name.endswith((".yml", ".yaml")))


def _strings(value: Any, key: Optional[str]) -> Iterator[Tuple[Optional[str], str]]:
    if isinstance(value, dict):
        for child_key, child in value.items():
            yield from _strings(child, child_key if isinstance(child_key, str) else None)
    elif isinstance(value, list):
        for child in value:
            yield from _strings(child, key)
    elif isinstance(value, str):
        yield key, value


def fill_steps(templates: List[str], conditionals: List[str], batch: int = 16) -> Iterator[int]:
    """Compiles the texts as a run compiles them (a template with the default options; a conditional as an
    expression without backslash escaping, ansible-core's rule for conditionals), `batch` at a time: the zygote
    takes one step whenever no run is waiting. Yields the number compiled so far."""
    from ansible._internal._templating._engine import TemplateEngine, TemplateOptions

    engine = TemplateEngine()
    conditional_options = TemplateOptions(escape_backslashes=False, preserve_trailing_newlines=False)
    work: List[Tuple[Callable[[str, Any], Any], str, Any]] = \
        [(engine._compile_template, text, TemplateOptions.DEFAULT) for text in templates]
    work += [(engine._compile_expression, text, conditional_options) for text in conditionals]
    for start in range(0, len(work), batch):
        for compile_one, text, options in work[start:start + batch]:
            compile_one(text, options)  # a text that does not compile is deferred by the engine, and not cached
        yield min(start + batch, len(work))


def cached_count() -> int:
    return len(_entries)


def cached_texts() -> Set[Tuple[str, str]]:
    """("template" or "expression", text) of every entry, whatever the settings it was compiled under."""
    return {(key[0], key[1]) for key in _entries}

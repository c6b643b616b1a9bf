"""A warm run's shared compiled templates (erlmcp_dr.warm.template_code_cache) give what ansible-core gives without
them: the same results and the same errors for templates and conditionals, a hit only where the key and the
filters' and tests' argument kinds match, never a cached compile error; and the zygote's fill (the collection's
playbooks and roles) compiles each text so that a run's own compilation of it is a hit.

In a child interpreter: install() changes ansible-core's AnsibleEnvironment, and this test process stays as shipped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys
from jinja2 import pass_environment
from ansible.plugins.loader import init_plugin_loader
from ansible._internal._datatag._tags import TrustedAsTemplate
from ansible._internal._templating._engine import TemplateEngine
from erlmcp_dr.warm import template_code_cache

init_plugin_loader()
VARIABLES = {"a": 1, "b": [3, 1, 2], "d": {"k": "v"}, "s": "x_name", "items": [{"n": 1, "on": True}, {"n": 2}]}
TEMPLATES = [
    "{{ a + 1 }}",
    "{{ b | sort | list }}",
    "{{ d | to_json }}",
    "{{ items | selectattr('on', 'defined') | map(attribute='n') | list }}",
    "{{ s | regex_replace('^(.*)_name$', '\\1') }}",
    "{{ 'c:\\new' }}",
    "#jinja2:variable_start_string:'[%',variable_end_string:'%]'\n[% a %] {{ a }}",
    "{{ a | no_such_filter }}",
    "{{ a + }}",
    "{{ undefined_variable }}",
    "{% if a is defined %}{{ a | string }}{% endif %}",
]
CONDITIONALS = ["a is defined", "b | length > 2", "a == 1 and d.k == 'v'", "a is no_such_test", "a ==", "missing"]

def outcome(call):
    try:
        return ["ok", repr(call())]
    except Exception as exc:
        return ["error", type(exc).__name__, str(exc).splitlines()[0]]

def trusted(text):
    return TrustedAsTemplate().tag(text)

def render_all():
    out = [outcome(lambda: TemplateEngine(variables=VARIABLES).template(trusted(text))) for text in TEMPLATES]
    for text in CONDITIONALS:
        out.append(outcome(lambda: TemplateEngine(variables=VARIABLES).evaluate_conditional(trusted(text))))
    return out

shipped = render_all()
installed = template_code_cache.install()
generated = [0]
original_generate = template_code_cache._installed["generate"]
def counting_generate(*args, **kwargs):
    generated[0] += 1
    return original_generate(*args, **kwargs)
template_code_cache._installed["generate"] = counting_generate

first = render_all()
first_generated, cached = generated[0], template_code_cache.cached_count()
second = render_all()
second_generated = generated[0] - first_generated

# The same text with a filter whose first argument changes kind (plain, then the environment's): never the old code.
def kinded(env, value):
    return "env:" + str(value)
def plain(value):
    return "plain:" + str(value)
def with_filter(function):
    engine = TemplateEngine(variables=VARIABLES)
    engine.environment.filters["erlmcp_probe"] = function
    return engine.template(trusted("{{ a | erlmcp_probe }}"))
kinds = [with_filter(plain), with_filter(pass_environment(kinded)), with_filter(plain)]

# The zygote's fill: the texts of a folder's YAML, then a run's compilation of each is a hit.
templates, conditionals = template_code_cache.collection_texts([sys.argv[1]])
before_fill = template_code_cache.cached_count()
progress = list(template_code_cache.fill_steps(templates, conditionals, batch=2))
after_fill = template_code_cache.cached_count()
generated_before = generated[0]
FILL_VARIABLES = {"port": 5432, "ok": True}
fill_hits = [outcome(lambda: TemplateEngine(variables=FILL_VARIABLES).template(trusted(t))) for t in templates]
fill_hits += [outcome(lambda: TemplateEngine(variables=FILL_VARIABLES).evaluate_conditional(trusted(c)))
              for c in conditionals]
print(json.dumps({
    "installed": installed, "shipped": shipped, "first": first, "second": second,
    "first_generated": first_generated, "second_generated": second_generated, "cached": cached,
    "kinds": kinds, "templates": templates, "conditionals": conditionals, "progress": progress,
    "filled": after_fill - before_fill, "fill_generated": generated[0] - generated_before, "fill_hits": fill_hits,
}))
"""

PLAYBOOK = """\
- name: A play
  hosts: all
  tasks:
    - name: Uses a template
      ansible.builtin.debug:
        msg: "port {{ port + 1 }}"
      when: ok
    - name: Asserts
      ansible.builtin.assert:
        that:
          - port > 1
          - "  ok  "
    - name: Plain text is not a template
      ansible.builtin.debug:
        msg: plain
"""


def _run_child(folder: Path) -> dict:
    result = subprocess.run([sys.executable, "-c", CHILD, str(folder)], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_cached_compiles_give_ansible_cores_own_results_and_errors(tmp_path: Path) -> None:
    (tmp_path / "roles" / "r" / "tasks").mkdir(parents=True)
    (tmp_path / "roles" / "r" / "tasks" / "main.yml").write_text(PLAYBOOK)
    (tmp_path / "broken.yml").write_text("{ not: yaml: [")
    report = _run_child(tmp_path)

    assert report["installed"] is True
    assert report["first"] == report["shipped"]
    assert report["second"] == report["shipped"]
    # The errors are there, each still its own kind: a compile error is a fresh compilation every time.
    errors = [item for item in report["shipped"] if item[0] == "error"]
    assert len(errors) >= 4, report["shipped"]
    assert report["first_generated"] > 0
    # Four texts do not compile: two fail in the parser ("{{ a + }}", "a =="), before any code is generated, and two
    # in the code generator (an unknown filter, an unknown test): those two are generated again, never cached.
    assert report["second_generated"] == 2, report
    assert report["cached"] == len(report["shipped"]) - 4

    assert report["kinds"] == ["plain:1", "env:1", "plain:1"]


def test_the_zygotes_fill_compiles_what_a_run_then_finds(tmp_path: Path) -> None:
    (tmp_path / "roles" / "r" / "tasks").mkdir(parents=True)
    (tmp_path / "roles" / "r" / "tasks" / "main.yml").write_text(PLAYBOOK)
    (tmp_path / "broken.yml").write_text("{ not: yaml: [")
    report = _run_child(tmp_path)

    assert report["templates"] == ["port {{ port + 1 }}"]
    assert report["conditionals"] == ["ok", "port > 1"]
    assert report["progress"] == [2, 3]
    assert report["filled"] == 3
    assert report["fill_generated"] == 0, "a text the zygote compiled was compiled again"
    assert report["fill_hits"] == [["ok", "'port 5433'"], ["ok", "True"], ["ok", "True"]]

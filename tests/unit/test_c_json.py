"""warm/c_json.py writes exactly what json.dumps writes (a zygote's key is a hash of it) and reads what json.loads
reads, through the C accelerator alone; bad input is a ValueError, a value JSON cannot hold a TypeError."""

from __future__ import annotations

import json
import math

import pytest

from erlmcp_dr.warm import c_json

VALUES = [
    {"argv": ["ansible-playbook", "-i", "hosts.ini", "--diff"], "env": {"PATH": "/usr/bin", "LANG": "C.UTF-8",
                                                                       "NOTE": "é ✓ \U0001f600 \"quoted\" \\ \n\t"}},
    {"umask": 18, "cwd": "/tmp", "marker": None, "ok": True, "no": False, "ratio": 0.25, "big": 2**70, "neg": -3},
    {"b": 1, "a": {"d": [], "c": {}}},
    [], {}, "text", 0, -0.0, 1e300, None,
]


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("sort_keys", [False, True])
def test_dumps_is_json_dumps_and_loads_reads_it_back(value, sort_keys):
    text = c_json.dumps(value, sort_keys=sort_keys)
    assert text == json.dumps(value, sort_keys=sort_keys)
    assert c_json.loads(text) == json.loads(text)
    assert c_json.loads(text.encode()) == json.loads(text)


def test_loads_takes_whitespace_around_a_value_and_the_constants_json_takes():
    assert c_json.loads(' \n {"a": [1, 2.5, "x"]} \t') == {"a": [1, 2.5, "x"]}
    assert c_json.loads("[NaN, Infinity, -Infinity]")[1:] == [math.inf, -math.inf]
    assert math.isnan(c_json.loads("[NaN]")[0])


@pytest.mark.parametrize("bad", ["", "   ", "{", '{"a": }', "[1] x", "nul", "{'a': 1}", b"\xff\xfe", '"\x01"'])
def test_what_json_refuses_is_refused_as_a_value_error(bad):
    with pytest.raises(ValueError):
        json.loads(bad)
    with pytest.raises(ValueError):
        c_json.loads(bad)


def test_a_value_json_cannot_hold_is_a_type_error_and_leaves_the_next_call_whole():
    with pytest.raises(TypeError, match="object"):
        c_json.dumps({"a": [object()]})
    assert c_json.dumps({"a": [1]}) == '{"a": [1]}'

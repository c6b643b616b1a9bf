"""The verdict rules of erlmcp.dr.health_check (module_utils/_region/health.py), without any service."""

from __future__ import annotations

import pytest

from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._region import health as _health  # noqa: E402


@pytest.mark.parametrize(("results", "expected"), [
    ([], None),
    ([False], None),
    ([False, False], None),
    ([False, False, False], "failed"),
    ([True, False, False, False], "failed"),
    ([False, False, True], None),
    ([False, False, True, True], "healthy"),
    ([True, True], "healthy"),
    ([True, False, True, False], None),
])
def test_a_verdict_needs_its_threshold_of_trailing_equal_samples(results, expected):
    assert _health.verdict(results, consecutive_failures=3, consecutive_successes=2) == expected


@pytest.mark.parametrize(("results", "expected"), [
    ([], "failed"),
    ([False, False], "failed"),
    ([True], "healthy"),
    ([True, False, True, False], "flapping"),
])
def test_at_the_deadline_disagreeing_samples_are_flapping_and_nothing_is_confirmed(results, expected):
    assert _health.final_verdict(results) == (expected, False)


def params(**changes):
    base = dict(kind="tcp", host="127.0.0.1", port=1, interval=5.0, timeout=60.0, sample_timeout=5.0,
                consecutive_failures=3, consecutive_successes=2, login_user=None)
    base.update(changes)
    return base


@pytest.mark.parametrize(("changes", "names"), [
    (dict(timeout=9.0), "raise timeout"),
    (dict(interval=0.0), "(interval, sample_timeout)"),
    (dict(consecutive_failures=0), "(consecutive_failures, consecutive_successes)"),
])
def test_settings_that_cannot_reach_a_verdict_are_refused_before_sampling(changes, names):
    with pytest.raises(ModuleFailure) as caught:
        _health.check_params(params(**changes))
    assert names in str(caught.value)


def test_the_target_names_the_user_never_the_password():
    assert _health.target(params(kind="postgres", login_user="dr", login_password="s3cret")) == "127.0.0.1:1 as dr"
    assert _health.target(params(kind="http", url="https://x/health")) == "https://x/health"

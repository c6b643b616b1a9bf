"""pg_promote's fence option (module_utils/_postgres/promote.fence_facts): what a stop fence's result vouches for,
and the
switchover's refusal after an unclean stop, decided before anything is asked or changed."""

from __future__ import annotations

import pytest

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.promote import fence_facts  # noqa: E402


def stop_fence(clean: bool | None, require: bool = True) -> dict:
    result = {"changed": True, "fenced": True, "state": "fenced", "method": "stop", "final_lsn": "0/3000028",
              "cluster_state": "shut down" if clean else "in production", "clean_shutdown": clean}
    return {"primary_host": "127.0.0.1", "primary_port": 5432,
            "fence": {"method": "stop", "result": result, "require_clean_shutdown": require}}


def test_a_clean_stop_gives_the_final_lsn():
    facts = fence_facts(stop_fence(clean=True), check_mode=False)

    assert facts == {"method": "stop", "done": True, "as_if_fenced": False, "final_lsn": "0/3000028"}


@pytest.mark.parametrize("clean", [False, None])
def test_an_unclean_stop_is_refused_when_a_clean_one_is_required(clean):
    with pytest.raises(ModuleFailure) as refused:
        fence_facts(stop_fence(clean=clean), check_mode=False)

    message = str(refused.value)
    assert "127.0.0.1:5432 was not shut down cleanly" in message and "nothing was promoted" in message
    assert "fence.require_clean_shutdown" in message and "0/3000028" in message


def test_an_unclean_stop_is_left_to_the_lag_gates_unless_required_and_check_mode_never_refuses():
    assert fence_facts(stop_fence(clean=False, require=False), check_mode=False)["done"] is True
    assert fence_facts(stop_fence(clean=False), check_mode=True)["as_if_fenced"] is True

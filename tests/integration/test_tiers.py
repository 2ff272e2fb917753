"""The registry: a list of tiers built in one loop; every executor refuses work once closed."""

from __future__ import annotations

import asyncio

import pytest

from faas.config import Settings
from faas.errors import ExecutorClosed, ShuttingDown
from faas.executors.registry import TIERS, availability, build_executors
from faas.models import ExecutionSpec, Limits

pytestmark = pytest.mark.sandbox


def _spec() -> ExecutionSpec:
    return ExecutionSpec(request_id="tiers", function_id="tiers", command=("true",), env={},
                         payload=b"", deadline=asyncio.get_running_loop().time() + 10,
                         limits=Limits())


def test_every_default_tier_is_in_the_list() -> None:
    names = [tier.name for tier in TIERS]
    assert len(names) == len(set(names)) and set(names) == set(Settings().executors)


async def test_enabled_tiers_are_built_and_unknown_ones_reported(bwrap_available: None) -> None:
    settings = Settings(executors=("sandbox", "nosuch"))
    usable, missing = await build_executors(settings)
    try:
        assert list(usable) == ["sandbox"] and missing == {"nosuch": "unknown executor 'nosuch'"}
        assert (await availability("nosuch", settings)).usable is False
        result = await usable["sandbox"].run(_spec())
        assert result.exit_code == 0, result.error
    finally:
        await usable["sandbox"].aclose()
    with pytest.raises(ExecutorClosed, match="the sandbox executor is closed") as caught:
        await usable["sandbox"].run(_spec())
    assert isinstance(caught.value, ShuttingDown) and caught.value.status == 503

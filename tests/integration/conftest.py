"""Fixtures shared by integration tests: a fast marketplace simulator and an HTTP session."""

from collections.abc import AsyncIterator

import aiohttp
import pytest

from services.pool.sim.server import SimServer, start_sim
from services.pool.sim.testing import FAST_CONFIG, instance_auth


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    """A simulator on fast timings, closed after the test."""
    server = await start_sim(FAST_CONFIG)
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp client session that sends the test instance secret to rented hosts (never to the market API)."""
    async with aiohttp.ClientSession(middlewares=(instance_auth,)) as s:
        yield s

"""The simulator keeps its market across restarts (issue 12 item 15): rentals survive, ids are never reused."""

import argparse

import aiohttp
import pytest

from services.pool.sim.__main__ import state_path
from services.pool.sim.server import start_sim
from services.pool.sim.testing import FAST_CONFIG, eventually, vast_json


async def hosted(sim, iid):
    return iid in sim.hosts

from tests.integration.test_sim_faults import create, show

pytestmark = pytest.mark.timeout(40)


async def test_a_restarted_simulator_still_has_its_rentals_and_never_reuses_an_id(tmp_path) -> None:
    path = tmp_path / "sim" / "market.json"
    async with aiohttp.ClientSession() as session:
        sim = await start_sim(FAST_CONFIG, state_path=path)
        try:
            kept = await create(session, sim, 0)
            ended = await create(session, sim, 1)
            status, _ = await vast_json(session, sim, "DELETE", f"/api/v0/instances/{ended}/", {})
            assert status == 200
            await eventually(lambda: hosted(sim, kept), timeout=10)  # its ComfyUI host is running
            billed_before = sim.state().total_billed_usd
            port_before = sim.market.instances[kept].host_port
        finally:
            await sim.close()
        assert path.exists()

        sim = await start_sim(FAST_CONFIG, state_path=path)
        try:
            row = await show(session, sim, kept)
            assert row is not None and row["id"] == kept and row["label"] == "pool-a"
            assert await show(session, sim, ended) is None  # still destroyed
            assert sim.state().total_billed_usd >= billed_before
            await eventually(lambda: hosted(sim, kept), timeout=10)  # hosts come back too, on the same port
            assert sim.market.instances[kept].host_port == port_before
            new = await create(session, sim, 2)
            assert new not in (kept, ended) and new > max(kept, ended)
        finally:
            await sim.close()


async def test_without_a_state_file_the_market_is_in_memory(tmp_path) -> None:
    args = argparse.Namespace(state_file="")
    assert state_path(args, {}) is None
    assert state_path(args, {"STOKER_DATA_DIR": str(tmp_path)}) == tmp_path / "sim" / "market.json"
    assert state_path(argparse.Namespace(state_file="/x/m.json"), {"STOKER_DATA_DIR": "/d"}).as_posix() == "/x/m.json"


async def test_an_unreadable_state_file_is_kept_aside_and_the_market_starts_fresh(tmp_path) -> None:
    path = tmp_path / "market.json"
    path.write_text("{not json")
    sim = await start_sim(FAST_CONFIG, state_path=path)
    try:
        assert sim.market.instances == {}
    finally:
        await sim.close()
    assert (tmp_path / "market.broken").read_text() == "{not json"

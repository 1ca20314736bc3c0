"""The sim's own control API under ``/_sim/`` (tests and the dashboard; not part of Vast)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from services.pool.sim.config import ForcedFaults, SimConfig, merge_config
from services.pool.sim.market import Market, MarketError
from services.pool.sim.responses import json_response
from services.pool.sim.snapshot import snapshot

Reconcile = Callable[[], Awaitable[None]]
Reset = Callable[[SimConfig], Awaitable[None]]


async def _json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    data = msgspec.json.decode(raw) if raw.strip() else {}
    if not isinstance(data, dict):
        raise msgspec.ValidationError("body must be a JSON object")
    return data


def build_control_app(app: web.Application, market: Market, reconcile: Reconcile, reset: Reset) -> None:
    """Add the ``/_sim/`` routes to ``app``."""

    def _bad(exc: Exception) -> web.Response:
        return json_response({"success": False, "msg": str(exc)}, status=400)

    async def state(request: web.Request) -> web.Response:
        await reconcile()
        return json_response(snapshot(market))

    async def billing(request: web.Request) -> web.Response:
        await reconcile()
        snap = snapshot(market)
        return json_response({"billing_instance_ids": snap.billing_instance_ids,
                              "total_billed_usd": snap.total_billed_usd, "credit": snap.credit})

    async def get_config(request: web.Request) -> web.Response:
        return json_response(market.config)

    async def put_config(request: web.Request) -> web.Response:
        try:
            market.config = merge_config(market.config, await _json(request))
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return _bad(exc)
        return json_response(market.config)

    async def do_reset(request: web.Request) -> web.Response:
        try:
            config = merge_config(market.config, await _json(request))
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return _bad(exc)
        await reset(config)
        return json_response(snapshot(market))

    async def get_faults(request: web.Request) -> web.Response:
        return json_response(market.forced)

    async def add_faults(request: web.Request) -> web.Response:
        try:
            extra = msgspec.convert(await _json(request), ForcedFaults)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return _bad(exc)
        for name in ForcedFaults.__struct_fields__:
            setattr(market.forced, name, getattr(market.forced, name) + getattr(extra, name))
        return json_response(market.forced)

    async def vanish(request: web.Request) -> web.Response:
        try:
            market.vanish(int(request.match_info["id"]))
        except MarketError as exc:
            return json_response({"success": False, "msg": exc.msg}, status=exc.status)
        await reconcile()
        return json_response({"success": True})

    async def die_mid_job(request: web.Request) -> web.Response:
        try:
            market.arm_mid_job_death(int(request.match_info["id"]))
        except MarketError as exc:
            return json_response({"success": False, "msg": exc.msg}, status=exc.status)
        return json_response({"success": True})

    app.router.add_get("/_sim/state", state)
    app.router.add_get("/_sim/billing", billing)
    app.router.add_get("/_sim/config", get_config)
    app.router.add_put("/_sim/config", put_config)
    app.router.add_post("/_sim/reset", do_reset)
    app.router.add_get("/_sim/faults", get_faults)
    app.router.add_post("/_sim/faults", add_faults)
    app.router.add_post(r"/_sim/instances/{id:\d+}/vanish", vanish)
    app.router.add_post(r"/_sim/instances/{id:\d+}/die_mid_job", die_mid_job)

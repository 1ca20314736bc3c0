"""aiohttp routes serving the Vast.ai REST subset (see shared/specs/vastai-api.md)."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from services.pool.sim.instance import CreateRequest
from services.pool.sim.market import Market, MarketError
from services.pool.sim.offers import QueryError, matches, parse_order, sort_rows
from services.pool.sim.responses import json_response, vast_error

Reconcile = Callable[[], Awaitable[None]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC_PATHS = ("/api/v0/gpu_names/unique/",)


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise QueryError(f"invalid JSON body: {exc}") from exc
    if not isinstance(data, dict):
        raise QueryError("JSON body must be an object")
    return data


def _json_param(request: web.Request, name: str, default: Any) -> Any:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise QueryError(f"{name} is not valid JSON") from exc


def _instance_id(request: web.Request) -> int:
    return int(request.match_info["id"])


def build_vast_app(app: web.Application, market: Market, reconcile: Reconcile) -> None:
    """Add the Vast API routes and their auth/rate-limit middleware to ``app``."""
    log_tokens: dict[str, tuple[int, int | None]] = {}

    @web.middleware
    async def vast_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return await handler(request)
        retry_after = market.rate_limited()
        if retry_after is not None:
            return vast_error(429, "API requests too frequent, please slow down.", "rate_limited",
                              headers={"Retry-After": f"{retry_after:g}"})
        if request.path not in PUBLIC_PATHS:
            auth = request.headers.get("Authorization", "")
            key = auth[7:].strip() if auth.startswith("Bearer ") else ""
            if not key:
                return vast_error(401, "Please log in or sign up", "auth_error")
            if market.config.api_key is not None and key != market.config.api_key:
                return vast_error(401, "Invalid user key", "auth_error")
        await reconcile()
        try:
            return await handler(request)
        except MarketError as exc:
            return vast_error(exc.status, exc.msg, exc.error)
        except (QueryError, ValueError, msgspec.ValidationError) as exc:
            return vast_error(400, str(exc), "invalid_args")
        except web.HTTPNotFound:
            return vast_error(404, f"API endpoint {request.path} not found.", "not_found")
        except web.HTTPMethodNotAllowed:
            return vast_error(405, f"Method {request.method} not allowed on {request.path}.", "bad_method")

    async def search_bundles(request: web.Request) -> web.Response:
        return json_response({"offers": market.search(await _body(request))})

    async def search_asks(request: web.Request) -> web.Response:
        body = await _body(request)
        query = body.get("q", body)
        return json_response({"offers": market.search(query if isinstance(query, dict) else {})})

    def _create(offer_id: int, body: dict[str, Any]) -> dict[str, Any]:
        req = msgspec.convert(body, CreateRequest)
        inst = market.create(offer_id, req)
        return {"success": True, "new_contract": inst.id, "instance_api_key": inst.api_key, "ask_id": offer_id}

    async def create_instance(request: web.Request) -> web.Response:
        return json_response(_create(int(request.match_info["id"]), await _body(request)))

    async def create_bulk(request: web.Request) -> web.Response:
        body = await _body(request)
        results: list[dict[str, Any]] = []
        for offer_id in body.get("ids") or []:
            try:
                results.append(_create(int(offer_id), body))
            except MarketError as exc:
                results.append({"success": False, "ask_id": offer_id, "error": exc.error, "msg": exc.msg})
        return json_response({"success": any(r["success"] for r in results), "results": results,
                              "new_contracts": [r["new_contract"] for r in results if r["success"]]})

    async def list_v1(request: web.Request) -> web.Response:
        filters = _json_param(request, "select_filters", {})
        order = parse_order(_json_param(request, "order_by", [{"col": "id", "dir": "asc"}]))
        select_cols = _json_param(request, "select_cols", None)
        limit = max(1, min(25, int(request.query.get("limit") or 25)))
        offset = 0
        token = request.query.get("after_token")
        if token:
            try:
                offset = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("off:"))
            except ValueError as exc:
                raise QueryError("invalid after_token") from exc
        if not isinstance(filters, dict):
            raise QueryError("select_filters must be an object")
        all_rows = [market.row(i) for i in market.visible_instances()]
        rows = sort_rows([r for r in all_rows if matches(r, filters)], order)
        page = rows[offset:offset + limit]
        if isinstance(select_cols, list) and select_cols and "*" not in select_cols:
            page = [{c: r.get(c) for c in ["id", *select_cols]} for r in page]
        next_off = offset + limit
        counts: dict[str, int] = {}
        for r in all_rows:
            if r["label"] is not None:
                counts[r["label"]] = counts.get(r["label"], 0) + 1
        return json_response({
            "instances": page, "total_instances": len(rows), "label_counts": counts,
            "next_token": base64.urlsafe_b64encode(f"off:{next_off}".encode()).decode() if next_off < len(rows) else None,
        })

    async def list_v0(request: web.Request) -> web.Response:
        return json_response({"instances": [market.row(i) for i in market.visible_instances()]})

    async def instance_filters(request: web.Request) -> web.Response:
        seen = {(r["actual_status"], r["verification"], r["gpu_name"])
                for r in (market.row(i) for i in market.visible_instances())}
        return json_response({"filters": [{"actual_status": a, "verification": v, "gpu_name": g}
                                          for a, v, g in sorted(seen, key=str)]})

    async def show_instance(request: web.Request) -> web.Response:
        inst = market.visible(_instance_id(request))
        return json_response({"instances": market.row(inst) if inst else None})

    async def update_instance(request: web.Request) -> web.Response:
        body, iid = await _body(request), _instance_id(request)
        if market.visible(iid) is None:
            raise MarketError(404, "no_such_instance", f"Instance {iid} not found.")
        if "label" in body:
            market.relabel(iid, body["label"])
        if "state" in body:
            market.set_state(iid, str(body["state"]))
        await reconcile()
        return json_response({"success": True})

    async def bulk_update(request: web.Request) -> web.Response:
        body = await _body(request)
        for iid in body.get("ids") or []:
            market.set_state(int(iid), str(body.get("state")))
        await reconcile()
        return json_response({"success": True})

    async def destroy(request: web.Request) -> web.Response:
        market.destroy(_instance_id(request))
        await reconcile()
        return json_response({"success": True})

    async def bulk_destroy(request: web.Request) -> web.Response:
        body = await _body(request)
        for iid in body.get("instance_ids") or []:
            try:
                market.destroy(int(iid))
            except MarketError:
                pass
        await reconcile()
        return json_response({"success": True})

    async def reboot(request: web.Request) -> web.Response:
        market.reboot(_instance_id(request))
        await reconcile()
        return json_response({"success": True})

    async def request_logs(request: web.Request) -> web.Response:
        iid, body = _instance_id(request), await _body(request)
        if market.visible(iid) is None:
            raise MarketError(404, "no_such_instance", f"Instance {iid} not found.")
        tail = int(body["tail"]) if str(body.get("tail") or "").isdigit() else None
        token = secrets.token_urlsafe(12)
        log_tokens[token] = (iid, tail)
        url = f"{request.scheme}://{request.host}/_logs/{token}.log"
        return json_response({"success": True, "result_url": url, "msg": "Logs are being uploaded."})

    async def get_log(request: web.Request) -> web.Response:
        found = log_tokens.get(request.match_info["token"])
        if found is None:
            return web.Response(status=404, text="<Error><Code>NoSuchKey</Code></Error>")
        return web.Response(text=market.log_text(found[0], found[1]), content_type="text/plain")

    async def current_user(request: web.Request) -> web.Response:
        billed = market.total_billed()
        return json_response({
            "id": 424242, "username": "stoker-sim", "email": "sim@stoker.invalid", "fullname": "Stoker Simulator",
            "credit": round(market.credit(), 4), "balance": 0.0, "balance_threshold": 0.0,
            "balance_threshold_enabled": False, "billed_expected": round(billed, 4),
            "billed_verified": round(billed, 4), "paid_expected": 0.0, "paid_verified": 0.0,
            "can_pay": True, "has_billing": True, "billing_creditonly": True, "got_signup_credit": True,
            "email_verified": True, "last4": None, "ssh_key": None, "user": "stoker-sim",
            "host_agreement_accepted": False, "is_admin": False,
        })

    async def gpu_names(request: web.Request) -> web.Response:
        return json_response({"gpu_names": market.gpu_names()})

    app.middlewares.append(vast_middleware)
    app.router.add_post("/api/v0/bundles/", search_bundles)
    app.router.add_put("/api/v0/search/asks/", search_asks)
    app.router.add_post("/api/v0/asks/bulk/", create_bulk)
    app.router.add_put(r"/api/v0/asks/{id:\d+}/", create_instance)
    app.router.add_get("/api/v1/instances/", list_v1)
    app.router.add_get("/api/v0/instances/", list_v0)
    app.router.add_put("/api/v0/instances/", bulk_update)
    app.router.add_delete("/api/v0/instances/", bulk_destroy)
    app.router.add_get("/api/v0/instances/filters/", instance_filters)
    app.router.add_put(r"/api/v0/instances/request_logs/{id:\d+}/", request_logs)
    app.router.add_put(r"/api/v0/instances/reboot/{id:\d+}/", reboot)
    app.router.add_get(r"/api/v0/instances/{id:\d+}/", show_instance)
    app.router.add_put(r"/api/v0/instances/{id:\d+}/", update_instance)
    app.router.add_delete(r"/api/v0/instances/{id:\d+}/", destroy)
    app.router.add_get("/api/v0/users/current", current_user)
    app.router.add_get("/api/v0/users/current/", current_user)
    app.router.add_get("/api/v0/gpu_names/unique/", gpu_names)
    app.router.add_get("/_logs/{token}.log", get_log)

"""Vast.ai over httpx, speaking the REST subset the way the official client 1.9.1 does.

See shared/specs/vastai-api.md. The API key and the env given to a rental (model tokens) are secrets:
they never reach a log line, an exception message or a repr.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import httpx
import msgspec
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from libs.events.pool import InstanceTemplate, Offer, OfferFilter
from libs.observability import tracing
from services.pool.providers.base import OfferUnavailable, ProviderError, ProviderInstance
from services.pool.providers.vastai_wire import (
    is_gone, instance_or_error, numeric_id, query_string, create_body, offer_from_row, offer_query,
)

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
MAX_RETRY_AFTER_S = 60.0  # a longer Retry-After is handed back to the caller instead of waited out
MAX_BACKOFF_S = 10.0
PAGE_LIMIT = 25  # the v1 list endpoint's maximum
MAX_PAGES = 400
USER_AGENT = "stoker/0.1.0"
# A ConnectError/ConnectTimeout/PoolTimeout means the request never left: resending cannot double-rent.
_UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
_encode = msgspec.json.Encoder().encode
_ID_SEGMENT = re.compile(r"/\d+(?=/|$)")


class _Secret:
    """A string that never shows itself in repr(), str() or vars()."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the Authorization header only."""
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


class VastAIProvider:
    """The Provider port over Vast.ai's REST API (or the built-in simulator, which speaks the same).

    ``retries`` counts attempts, like the official client's ``--retry``; ``deadline`` bounds one call's
    attempts and waits together. ``sleep`` and ``clock`` are injectable so tests do not wait.
    """

    def __init__(self, api_key: str, base_url: str = "https://console.vast.ai", *, retries: int = 5,
                 timeout: float = 30.0, transport: httpx.AsyncBaseTransport | None = None,
                 deadline: float = 120.0, backoff: float = 0.5, name: str = "vastai",
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._key = _Secret(api_key.strip())
        self._base = base_url.rstrip("/")  # the client does no slash normalisation: avoid `//api`
        self._attempts = max(1, retries)  # like the official client's --retry: total attempts
        self._timeout, self._deadline, self._backoff = timeout, deadline, backoff
        self._sleep, self._clock = sleep, clock
        self._client = httpx.AsyncClient(
            transport=transport, timeout=timeout, follow_redirects=False,
            event_hooks={"request": [self._log_request], "response": [self._log_response]},
        )

    def __repr__(self) -> str:
        key = "set" if self._key.reveal() else "unset"
        return f"VastAIProvider(name={self.name!r}, base_url={self._base!r}, api_key={key})"

    def set_api_key(self, key: str) -> None:
        """Use ``key`` from the next request on (empty: send no Authorization header)."""
        self._key = _Secret(key.strip())
        log.info("%s: API key replaced", self.name)

    async def search_offers(self, flt: OfferFilter, *, exclude_hosts: frozenset[str] = frozenset(),
                            limit: int = 20) -> list[Offer]:
        """Offers matching the filter, best first (GPU priority order, then price)."""
        data = self._json(await self._send("POST", "/api/v0/bundles/", body=offer_query(flt, exclude_hosts)),
                          "search offers")
        rows = data.get("offers") if isinstance(data, dict) else None
        priority = {g: i for i, g in enumerate(flt.gpu_names)}
        offers: list[Offer] = []
        for row in rows if isinstance(rows, list) else []:
            try:
                offer = offer_from_row(row)
            except (KeyError, TypeError, ValueError, AttributeError):
                continue  # no price or id: never rent what we cannot price
            # re-check what costs money or repeats a bad host, whatever the server did with the query
            if (offer.host_id in exclude_hosts or offer.dph > flt.max_dph or offer.num_gpus != 1
                    or (priority and offer.gpu_name not in priority)):
                continue
            offers.append(offer)
        offers.sort(key=lambda o: (priority.get(o.gpu_name, 0), o.dph, o.offer_id))
        return offers[:limit]

    async def create_instance(self, offer: Offer, template: InstanceTemplate, *, label: str,
                              env: dict[str, str]) -> str:
        """Rent the offer; return the instance id (``new_contract``). ``env`` is never logged."""
        offer_id = numeric_id(offer.offer_id, "offer")
        secrets = [v for v in env.values() if len(v) >= 4]
        resp = await self._send("PUT", f"/api/v0/asks/{offer_id}/", body=create_body(template, label, env),
                                idempotent=False)
        if 400 <= resp.status_code < 500 and resp.status_code != 429:
            error, msg = _error_fields(resp)
            text = f"{error or ''} {msg}".lower()
            if _gone_404(resp) or "no_such_ask" in text or "not available" in text or "unavail" in text:
                raise OfferUnavailable(f"Vast.ai offer {offer_id} is unavailable: {self._scrub(msg, secrets)}",
                                       status=resp.status_code)
        data = self._json(resp, "create instance", secrets)
        contract = data.get("new_contract") if isinstance(data, dict) else None
        if not isinstance(data, dict) or data.get("success") is False or contract is None:
            msg = (data.get("msg") or data.get("error")) if isinstance(data, dict) else None
            detail = self._scrub(str(msg), secrets)
            raise ProviderError(f"Vast.ai create instance returned no new_contract: {detail}", status=resp.status_code)
        log.info("%s: rented offer %s as instance %s (label %s)", self.name, offer_id, contract, label)
        return str(contract)

    async def list_instances(self) -> list[ProviderInstance]:
        """Every instance of this account, following next_token through all pages."""
        params: dict[str, Any] = {"select_filters": {}, "order_by": [{"col": "id", "dir": "asc"}],
                                  "limit": PAGE_LIMIT}
        out: list[ProviderInstance] = []
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            data = self._json(await self._send("GET", "/api/v1/instances/", query=params), "list instances")
            page = data.get("instances") if isinstance(data, dict) else None
            if not isinstance(page, list) and page is not None:
                raise ProviderError("Vast.ai list instances: the response has no instance list", retryable=True)
            out.extend(instance_or_error(r) for r in page or [] if not is_gone(r))
            token = data.get("next_token")
            if not token:
                return out
            if str(token) in seen:
                raise ProviderError("Vast.ai list instances: the server repeated a page token", retryable=True)
            seen.add(str(token))
            params["after_token"] = str(token)
        raise ProviderError(f"Vast.ai list instances: more than {MAX_PAGES} pages", retryable=True)

    async def show_instance(self, provider_id: str) -> ProviderInstance | None:
        """One instance, or None when gone (``{"instances": null}``, HTTP 404, or a destroyed row)."""
        iid = numeric_id(provider_id, "instance")
        resp = await self._send("GET", f"/api/v0/instances/{iid}/", query={"owner": "me"})
        if _gone_404(resp):
            return None
        data = self._json(resp, "show instance")
        if not isinstance(data, dict) or "instances" not in data:
            raise ProviderError("Vast.ai show instance: the response has no 'instances' key", retryable=True)
        row = data["instances"]
        return None if row is None or is_gone(row) else instance_or_error(row)

    async def destroy_instance(self, provider_id: str) -> bool:
        """Destroy the instance; True when it is already gone (404), which is not an error."""
        iid = numeric_id(provider_id, "instance")
        resp = await self._send("DELETE", f"/api/v0/instances/{iid}/", body={})
        if _gone_404(resp):
            log.info("%s: instance %s already gone", self.name, iid)
            return True
        data = self._json(resp, "destroy instance")
        if isinstance(data, dict) and data.get("success") is False:
            raise ProviderError(f"Vast.ai destroy instance failed: {self._scrub(str(data.get('msg')))}",
                                status=resp.status_code, retryable=True)
        log.info("%s: destroy requested for instance %s", self.name, iid)
        return False

    async def aclose(self) -> None:
        """Release connections."""
        await self._client.aclose()

    # --- HTTP -------------------------------------------------------------------------

    async def _log_request(self, request: httpx.Request) -> None:
        log.debug("%s: %s %s", self.name, request.method, request.url.path)  # never headers or body

    async def _log_response(self, response: httpx.Response) -> None:
        log.debug("%s: %s %s -> %d", self.name, response.request.method, response.request.url.path,
                  response.status_code)

    def _headers(self, has_body: bool) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept": "*/*"}
        if has_body:
            headers["Content-Type"] = "application/json"
        if key := self._key.reveal():
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _scrub(self, text: str, secrets: Iterable[str] = ()) -> str:
        """Text from the server or a transport error with the key and the given secrets masked."""
        for secret in (self._key.reveal(), *secrets):
            if secret:
                text = text.replace(secret, "***")
        return text[:500]

    async def _send(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                    body: Any = None, idempotent: bool = True) -> httpx.Response:
        """One call with bounded retries, in one client span; returns the final response (any status)."""
        route = _ID_SEGMENT.sub("/{id}", path)
        # Method, route and status only: never the key, the headers, the query or the body.
        attributes = {"http.request.method": method, "url.template": route, "url.path": path,
                      "server.address": httpx.URL(self._base).host, "stoker.provider": self.name}
        with tracing.span("pool", f"{method} {route}", kind=SpanKind.CLIENT, attributes=attributes) as span:
            try:
                resp = await self._attempts_of(method, path, query=query, body=body, idempotent=idempotent)
            except ProviderError as exc:
                span.set_status(StatusCode.ERROR, type(exc).__name__)
                raise
            span.set_attribute("http.response.status_code", resp.status_code)
            if resp.status_code >= 400:
                span.set_status(StatusCode.ERROR, f"HTTP {resp.status_code}")
            return resp

    async def _attempts_of(self, method: str, path: str, *, query: Mapping[str, Any] | None,
                           body: Any, idempotent: bool) -> httpx.Response:
        url = self._base + path + (f"?{query_string(query)}" if query else "")
        content = None if body is None else _encode(body)
        start, backoff = self._clock(), self._backoff
        for attempt in range(1, self._attempts + 1):
            left = self._deadline - (self._clock() - start)
            last = attempt == self._attempts
            try:
                resp = await self._client.request(method, url, content=content,
                                                  headers=self._headers(content is not None),
                                                  timeout=max(0.1, min(self._timeout, left)))
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {self._scrub(str(exc))}"
                if not isinstance(exc, _UNSENT) and not (idempotent and isinstance(exc, _TRANSIENT)):
                    unknown = "" if idempotent else " (outcome unknown: reconcile by label)"
                    raise ProviderError(f"Vast.ai {method} {path} failed: {reason}{unknown}",
                                        retryable=isinstance(exc, _TRANSIENT)) from None
                delay = _jitter(backoff)
                if last or self._clock() - start + delay > self._deadline:
                    raise ProviderError(f"Vast.ai {method} {path} failed after {attempt} attempts: {reason}",
                                        retryable=True) from None
            else:
                # only a 429 proves the server did nothing: a 5xx on a rental may still have rented
                if resp.status_code not in RETRYABLE_STATUS or (not idempotent and resp.status_code != 429):
                    return resp
                wait = _retry_delay(resp, backoff)
                if wait is None or last or self._clock() - start + wait > self._deadline:
                    return resp  # _json() turns it into a retryable ProviderError
                delay, reason = wait, f"HTTP {resp.status_code}"
            backoff = min(backoff * 2, MAX_BACKOFF_S)
            log.warning("%s: %s %s: %s; retry %d/%d in %.2fs", self.name, method, path, reason, attempt,
                        self._attempts - 1, delay)
            trace.get_current_span().add_event("retry", {"attempt": attempt, "reason": reason, "delay_s": delay})
            await self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _json(self, resp: httpx.Response, what: str, secrets: Iterable[str] = ()) -> Any:
        """The decoded body of a 2xx response; a ProviderError carrying the server's ``msg`` otherwise."""
        status = resp.status_code
        if not 200 <= status < 300:
            error, msg = _error_fields(resp)
            retry_after = resp.headers.get("Retry-After")
            extra = f" (Retry-After {retry_after}s)" if status == 429 and retry_after else ""
            raise ProviderError(f"Vast.ai {what} failed with error {status}: {self._scrub(msg, secrets)}{extra}",
                                status=status, retryable=status in (408, 429) or status >= 500)
        try:
            return msgspec.json.decode(resp.content)
        except msgspec.DecodeError:
            raise ProviderError(f"Vast.ai {what}: HTTP {status} with a body that is not JSON",
                                status=status, retryable=True) from None


def _error_fields(resp: httpx.Response) -> tuple[str | None, str]:
    """(``error``, ``msg``) of a Vast error body, with the CLI's fallbacks."""
    try:
        data = msgspec.json.decode(resp.content)
    except msgspec.DecodeError:
        data = None
    if isinstance(data, dict) and data.get("msg"):
        error = data.get("error")
        return (str(error) if error else None), str(data["msg"])
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"]), str(data["error"])
    return None, "Please log in or sign up" if resp.status_code == 401 else "(no detail message supplied)"


def _gone_404(resp: httpx.Response) -> bool:
    """A 404 that means 'no such instance' (not a wrong URL, a proxy page or an expired session)."""
    if resp.status_code != 404:
        return False
    try:
        data = msgspec.json.decode(resp.content)
    except msgspec.DecodeError:
        return False
    msg = str(data.get("msg") or "").lower() if isinstance(data, dict) else ""
    return isinstance(data, dict) and "session expired" not in msg and "endpoint" not in msg


def _jitter(seconds: float) -> float:
    """Equal jitter: between half and all of ``seconds``."""
    return seconds / 2 + random.uniform(0, seconds / 2)


def _retry_delay(resp: httpx.Response, backoff: float) -> float | None:
    """Seconds to wait before retrying a 429/5xx, or None when it must not be retried now."""
    if resp.status_code == 429:
        error, _ = _error_fields(resp)
        if error == "search_quota_exceeded":  # resets at UTC midnight: retrying burns requests
            return None
    try:
        wait = float(resp.headers["Retry-After"])
    except (KeyError, ValueError):
        return _jitter(backoff)
    if wait != wait or wait > MAX_RETRY_AFTER_S:  # NaN or too long
        return None
    return max(0.0, wait) * (1 + random.uniform(0, 0.1))  # never sooner than asked

"""Property test against /api/openapi.json: requests generated from its schemas never get a 5xx.

Hypothesis draws, for every documented operation: a credential (admin key, user token, a bad
token, none), path parameters, query parameters and bodies from the document's JSON Schemas,
and mutations of them (wrong types, unknown fields, random JSON, raw bytes). Every response
must be below 500, and every error must have the one JSON shape.

The whole stack (gateway, a real pool service on the simulator, a real audit service) runs on
its own event loop in a thread, because Hypothesis drives synchronous test functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import string
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC
from typing import Any
from urllib.parse import quote

import nats
import pytest
from aiohttp import ClientSession, ClientTimeout, test_utils
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.audit.app import AuditService
from services.audit.config import AuditConfig
from services.audit.testing import fresh_database
from services.gateway.app import create_app
from services.gateway.testing import (
    ADMIN_KEY,
    PASSWORD,
    gateway_env,
    generation_on,
    pool_on_sim,
    unique_pool_id,
)

pytestmark = pytest.mark.timeout(120)
EXAMPLES = 30
GOOD_BODIES: dict[tuple[str, str], Any] = {
    ("PUT", "/api/v1/pool/config"): {"max_size": 4},
    ("POST", "/api/v1/generations/estimate"): {"template": "txt2img", "prompt": "a lighthouse"},
    ("POST", "/api/v1/generations"): {"template": "txt2img", "prompt": "a lighthouse"},
    ("POST", "/api/v1/muses"): {"name": "Ada"},
}
SKIP_BODY = {"text/event-stream"}


class Stack:
    """The running stack on a background loop; ``call`` makes one HTTP request from the test thread."""

    def __init__(self, nats_url: str, database_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="gateway-property", daemon=True)
        self.thread.start()
        self.stack = contextlib.AsyncExitStack()
        self.base = ""
        self.user_token = ""
        self.known_ids: list[str] = []  # ids of objects that exist, so operations on one reach past the 404
        self.known_by_prefix: dict[str, list[str]] = {}  # the same, for the operations under one path only
        self.run(self._start(nats_url, database_url), 60)

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self, nats_url: str, database_url: str) -> None:
        s = self.stack
        nc = await nats.connect(nats_url)
        s.push_async_callback(nc.close)
        pool_id = unique_pool_id()
        await s.enter_async_context(pool_on_sim(nc, nc.jetstream(), pool_id, reconcile_interval_s=3600))
        await s.enter_async_context(generation_on(nats_url, pool_id))  # no worker: jobs stay queued
        dsn = await fresh_database(database_url, "gwprop")
        token = uuid.uuid4().hex[:10]
        audit = {"AUDIT_HMAC_KEY": "p-" + token, "AUDIT_CHAIN": f"p{token}", "AUDIT_DURABLE": f"audit-p{token}",
                 "AUDIT_START": "new"}
        service = AuditService(AuditConfig.from_mapping({"NATS_URL": nats_url, "DATABASE_URL": dsn, **audit}))
        await service.start()
        s.push_async_callback(service.stop)
        env = gateway_env(nats_url, dsn, STOKER_POOL_ID=pool_id, **audit)
        server = test_utils.TestServer(create_app(env))
        await s.enter_async_context(server)
        self.base = f"http://127.0.0.1:{server.port}"
        self.session = await s.enter_async_context(ClientSession(timeout=ClientTimeout(total=20)))
        async with self.session.post(f"{self.base}/api/v1/auth/register", headers={"X-Admin-Api-Key": ADMIN_KEY},
                                     json={"username": f"prop-{token}", "password": PASSWORD}) as resp:
            assert resp.status == 201
        async with self.session.post(f"{self.base}/api/v1/auth/login",
                                     json={"username": f"prop-{token}", "password": PASSWORD}) as resp:
            session = (await resp.json())["token"]
        # An API token, not the session: a generated logout must not sign the test's user out.
        async with self.session.post(f"{self.base}/api/v1/tokens", json={"name": "property"},
                                     headers={"Authorization": f"Bearer {session}"}) as resp:
            self.user_token = (await resp.json())["token"]
        user = {"Authorization": f"Bearer {self.user_token}"}
        async with self.session.post(f"{self.base}/api/v1/generations", headers=user,
                                     json={"template": "txt2img", "prompt": "property"}) as resp:
            assert resp.status == 201, await resp.text()
            self.known_ids.append((await resp.json())["id"])
        async with self.session.post(f"{self.base}/api/v1/muses", headers=user, json={"name": "property"}) as resp:
            assert resp.status == 201, await resp.text()
            self.known_ids.append((await resp.json())["id"])
        # An account the generated admin operations may disable, reset and delete, and a spare session to end.
        async with self.session.post(f"{self.base}/api/v1/auth/register", headers={"X-Admin-Api-Key": ADMIN_KEY},
                                     json={"username": f"victim-{token}", "password": PASSWORD}) as resp:
            self.known_by_prefix["/api/v1/accounts/"] = [(await resp.json())["id"]]
        async with self.session.post(f"{self.base}/api/v1/auth/login",
                                     json={"username": f"prop-{token}", "password": PASSWORD}) as resp:
            spare = (await resp.json())["token"]
        async with self.session.get(f"{self.base}/api/v1/auth/sessions",
                                    headers={"Authorization": f"Bearer {spare}"}) as resp:
            self.known_by_prefix["/api/v1/auth/sessions/"] = [s["id"] for s in (await resp.json())["items"]
                                                              if s["current"]]
        self.session.cookie_jar.clear()

    async def _call(self, method: str, path: str, params: dict[str, str], body: bytes | None,
                    headers: dict[str, str]) -> tuple[int, str, bytes]:
        async with self.session.request(method, self.base + path, params=params, data=body, headers=headers) as resp:
            media = resp.headers.get("Content-Type", "").split(";")[0]
            data = b"" if media in SKIP_BODY else await resp.read()
        self.session.cookie_jar.clear()
        return resp.status, media, data

    def call(self, method: str, path: str, params: dict[str, str], body: bytes | None,
             headers: dict[str, str]) -> tuple[int, str, bytes]:
        return self.run(self._call(method, path, params, body, headers))

    def close(self) -> None:
        try:
            self.run(self.stack.aclose(), 60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture(scope="module")
def stack(nats_url: str, database_url: str) -> Iterator[Stack]:
    running = Stack(nats_url, database_url)
    try:
        yield running
    finally:
        running.close()


# --- strategies from JSON Schema ------------------------------------------------------------

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(max_size=20), lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


def from_schema(schema: dict[str, Any], components: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values (mostly) valid for ``schema``: the subset of JSON Schema msgspec writes."""
    if "$ref" in schema:
        return from_schema(components[schema["$ref"].rsplit("/", 1)[-1]], components, depth + 1)
    if "anyOf" in schema:
        return st.one_of([from_schema(s, components, depth + 1) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(min_value=schema.get("minimum"), max_value=schema.get("maximum"))
    if kind == "number":
        return st.floats(min_value=schema.get("minimum"), max_value=schema.get("maximum"), allow_nan=False,
                         allow_infinity=False)
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "date-time":
            return st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat())
        if fmt == "date":
            return st.dates().map(lambda d: d.isoformat())
        low, high = schema.get("minLength", 0), schema.get("maxLength", 10**6)
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: low <= len(s) <= high)
        printable = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=low, max_size=min(high, 30))
        return st.one_of(printable, printable, st.text(min_size=low, max_size=min(high, 30)))
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), components, depth + 1), max_size=3)
    if kind == "object":
        props = schema.get("properties")
        if props is None:
            values = schema.get("additionalProperties", {})
            inner = from_schema(values, components, depth + 1) if isinstance(values, dict) and values else JSON
            return st.dictionaries(st.text(max_size=8), inner, max_size=3)
        required = set(schema.get("required", []))
        fixed = {k: from_schema(v, components, depth + 1) for k, v in props.items() if k in required}
        optional = {k: from_schema(v, components, depth + 1) for k, v in props.items()
                    if k not in required and depth < 3}
        return st.fixed_dictionaries(fixed, optional=optional)
    return JSON


def mutated(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Valid values, and values a careless or hostile client sends."""
    extra_field = st.tuples(valid, st.text(min_size=1, max_size=8), JSON).map(
        lambda t: {**t[0], t[1]: t[2]} if isinstance(t[0], dict) else t[0])
    return st.one_of(valid, valid, extra_field, JSON)


def as_param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def request_strategy(path: str, method: str, item: dict[str, Any], components: dict[str, Any], known: list[str]
                     ) -> st.SearchStrategy[tuple[str, dict[str, str], bytes | None, str]]:
    path_values: dict[str, st.SearchStrategy[str]] = {}
    query: dict[str, st.SearchStrategy[str]] = {}
    for p in item.get("parameters", []):
        valid = from_schema(p["schema"], components).map(as_param)
        value = st.one_of(valid, valid, st.text(max_size=12))
        if p["in"] == "path":
            path_values[p["name"]] = st.one_of(value.filter(bool), st.sampled_from(known))
        else:
            query[p["name"]] = value
    schema = item.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    if schema is not None:
        # A known-good body beside the generated ones: fields bounded as tightly as these rarely come out valid
        # from random data, and the aim is to reach past validation, not to stop at it.
        good = [json.dumps(GOOD_BODIES[(method.upper(), path)]).encode()] if (method.upper(), path) in GOOD_BODIES \
            else []
        body = st.one_of(mutated(from_schema(schema, components)).map(lambda v: json.dumps(v).encode()),
                         st.binary(max_size=20), st.just(b""), *map(st.just, good))
    else:
        body = st.none()
    junk = st.dictionaries(st.sampled_from(["bogus", "limit", "x"]), st.text(string.printable, max_size=5),
                           max_size=1)
    return st.tuples(
        st.fixed_dictionaries(path_values).map(
            lambda values: _fill(path, values)),
        st.tuples(st.fixed_dictionaries({}, optional=query), junk).map(lambda qs: {**qs[1], **qs[0]}),
        body,
        st.sampled_from(["admin", "admin", "user", "bad", "none"]),
    )


def _fill(path: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        path = path.replace("{" + name + "}", quote(value, safe=""))
    return path


def credentials(kind: str, stack: Stack) -> dict[str, str]:
    return {"admin": {"X-Admin-Api-Key": ADMIN_KEY}, "user": {"Authorization": f"Bearer {stack.user_token}"},
            "bad": {"Authorization": "Bearer stk_" + "A" * 43}, "none": {}}[kind]


def check_operation(stack: Stack, method: str, path: str, item: dict[str, Any], components: dict[str, Any]
                    ) -> set[int]:
    """Run Hypothesis over one operation; the statuses it saw."""
    statuses: set[int] = set()
    known = next((ids for prefix, ids in stack.known_by_prefix.items() if path.startswith(prefix)), stack.known_ids)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(request_strategy(path, method, item, components, known))
    def one(req: tuple[str, dict[str, str], bytes | None, str]) -> None:
        url, params, body, who = req
        headers = credentials(who, stack)
        if body is not None:
            headers["Content-Type"] = "application/json"
        status, media, data = stack.call(method.upper(), url, params, body, headers)
        statuses.add(status)
        assert status < 500, (method, url, params, body, who, status, data[:300])
        if status >= 400:
            assert media == "application/json", (url, status, media)
            answer = json.loads(data)
            error = answer["error"]
            if path.startswith("/comfy/") and status == 400 and "node_errors" in answer:  # ComfyUI's own shape
                assert set(error) == {"type", "message", "details", "extra_info"} and error["message"]
                return
            assert set(error) <= {"code", "message", "details"} and error["code"] and error["message"]

    one()
    return statuses


def test_no_generated_request_gets_a_5xx(stack: Stack) -> None:
    status, _, raw = stack.call("GET", "/api/openapi.json", {}, None, {})
    assert status == 200
    doc = json.loads(raw)
    components = doc["components"]["schemas"]
    assert doc["openapi"].startswith("3.1") and len(doc["paths"]) >= 20
    seen = {f"{method.upper()} {path}": check_operation(stack, method, path, item, components)
            for path, methods in doc["paths"].items() for method, item in methods.items()}
    # The generator reaches past the front door: most operations answered 2xx at least once.
    succeeded = [op for op, codes in seen.items() if any(200 <= c < 300 for c in codes)]
    never = {op: sorted(c) for op, c in seen.items() if op not in succeeded}
    assert len(succeeded) >= len(seen) * 0.7, f"{len(never)} of {len(seen)} never answered 2xx: {never}"

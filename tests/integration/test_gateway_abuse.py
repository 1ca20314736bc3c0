"""Abuse of the gateway's front door, against real NATS and PostgreSQL: broken credentials, deep JSON,
many tokens of one account, password guessing, cross-origin sockets, weak passwords, old hashes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing

import aiohttp
import asyncpg
import pytest
from aiohttp import test_utils

from libs.events import Recorded, subjects
from libs.events.replay import replay
from services.gateway import passwords
from services.gateway.testing import (
    ADMIN,
    PASSWORD,
    bearer,
    eventually,
    gateway_client,
    gateway_env,
    user_token,
)

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def client(nats_url: str, database_url: str) -> AsyncIterator[test_utils.TestClient]:
    async with gateway_client(gateway_env(nats_url, database_url)) as client:
        yield client


async def raw(client: test_utils.TestClient, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send one hand-made HTTP/1.1 request (headers may hold any bytes); (status, body)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(head.replace(b"\n", b"\r\n") + b"Connection: close\r\n\r\n" + body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


async def events_of(js, subject: str) -> list[object]:
    out = []
    reader = replay(js, subjects.event_stream(subjects.ACCOUNTS), subject)
    async with aclosing(reader):
        async for rec in reader:
            assert isinstance(rec, Recorded)
            out.append(rec)
    return out


# -- item 8: a non-UTF-8 byte in a credential ---------------------------------------------------------------


@pytest.mark.parametrize("header", [
    b"X-Admin-Api-Key: test-admin-key-\xff\xfe",
    b"Authorization: Bearer stk_" + b"A" * 30 + b"\xff",
    b"Cookie: stoker_session=sss_" + b"B" * 30 + b"\xc3\x28",
])
async def test_a_non_utf8_credential_is_a_clean_401_and_rate_limited(nats_url, database_url, caplog, header) -> None:
    caplog.set_level(logging.DEBUG)
    env = gateway_env(nats_url, database_url, STOKER_RATE_LIMIT_API="3/60")
    async with gateway_client(env) as client:
        answers = [await raw(client, b"GET /api/v1/auth/me HTTP/1.1\nHost: x\n" + header + b"\n") for _ in range(4)]
    assert [status for status, _ in answers[:3]] == [401, 401, 401], answers
    assert b'"AUTH_REQUIRED"' in answers[0][1]
    assert answers[3][0] == 429 and b'"RATE_LIMITED"' in answers[3][1]
    assert "Traceback" not in caplog.text and not any(r.exc_info for r in caplog.records)


# -- item 8: JSON nested 1,000+ deep ------------------------------------------------------------------------


async def test_deeply_nested_json_is_a_400(client: test_utils.TestClient, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    deep = b"[" * 5000 + b"]" * 5000
    for path, body in [("/api/v1/generations", b'{"workflow": {"1": ' + deep + b"}}"),
                       ("/comfy/prompt", b'{"prompt": {"1": ' + deep + b"}}")]:
        resp = await client.post(path, data=body, headers={**ADMIN, "Content-Type": "application/json"})
        assert resp.status == 400, (path, resp.status, await resp.text())
        error = (await resp.json())["error"]
        assert error["code"] == "VALIDATION_FAILED" and "deep" in error["message"], error
    assert not any(r.exc_info for r in caplog.records)


# -- item 4: per account as well as per token; a cap on tokens ----------------------------------------------


async def test_many_tokens_of_one_account_share_its_rate_limit(nats_url, database_url, unique_id) -> None:
    env = gateway_env(nats_url, database_url, STOKER_RATE_LIMIT_API="10/60", STOKER_RATE_LIMIT_ACCOUNT="20/60")
    async with gateway_client(env) as client:
        user_id, _ = await user_token(client, f"many-{unique_id}")
        tokens = []
        for i in range(5):
            resp = await client.post("/api/v1/tokens", json={"name": f"t{i}", "user_id": user_id}, headers=ADMIN)
            assert resp.status == 201
            tokens.append((await resp.json())["token"])
        statuses = [(await client.get("/api/v1/auth/me", headers=bearer(t))).status for t in tokens for _ in range(10)]
        assert statuses.count(200) == 20 and statuses.count(429) == 30, statuses
        _, other = await user_token(client, f"other-{unique_id}")
        assert (await client.get("/api/v1/auth/me", headers=bearer(other))).status == 200  # another account


async def test_tokens_per_account_are_capped(nats_url, database_url, unique_id) -> None:
    env = gateway_env(nats_url, database_url, STOKER_MAX_TOKENS_PER_USER="3")
    async with gateway_client(env) as client:
        user_id, session = await user_token(client, f"cap-{unique_id}")
        made = []
        for i in range(3):
            resp = await client.post("/api/v1/tokens", json={"name": f"t{i}"}, headers=bearer(session))
            assert resp.status == 201
            made.append((await resp.json())["id"])
        resp = await client.post("/api/v1/tokens", json={"name": "one too many"}, headers=bearer(session))
        assert resp.status == 409, await resp.text()
        error = (await resp.json())["error"]
        assert error["code"] == "TOO_MANY_TOKENS" and "3" in error["message"]
        resp = await client.post("/api/v1/tokens", json={"name": "x", "user_id": user_id}, headers=ADMIN)
        assert resp.status == 409  # the admin is held to it too
        assert (await client.delete(f"/api/v1/tokens/{made[0]}", headers=bearer(session))).status == 200
        resp = await client.post("/api/v1/tokens", json={"name": "after a revoke"}, headers=bearer(session))
        assert resp.status == 201


# -- issue 11: sign-in limiting counts failures, per account and per address ---------------------------------


async def test_sign_in_limits_count_failures_only(nats_url, database_url, unique_id) -> None:
    env = gateway_env(nats_url, database_url, STOKER_RATE_LIMIT_LOGIN="3/900")
    async with gateway_client(env) as client:
        name = f"studio-{unique_id}"
        await user_token(client, name)
        for _ in range(6):  # a studio behind one address signs in again and again
            resp = await client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
            assert resp.status == 200, await resp.text()
        for _ in range(3):
            resp = await client.post("/api/v1/auth/login", json={"username": name, "password": "wrong guess 1"})
            assert resp.status == 401
        resp = await client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
        assert resp.status == 429 and (await resp.json())["error"]["code"] == "RATE_LIMITED"


async def test_sign_in_failures_are_limited_per_account_across_addresses(nats_url, database_url, unique_id) -> None:
    env = gateway_env(nats_url, database_url, STOKER_RATE_LIMIT_LOGIN="3/900", STOKER_TRUSTED_PROXIES="127.0.0.1")
    async with gateway_client(env) as client:
        name = f"target-{unique_id}"
        await user_token(client, name)
        for i in range(3):  # a guesser rotating addresses (seen through a trusted proxy)
            resp = await client.post("/api/v1/auth/login", json={"username": name, "password": "guess-guess"},
                                     headers={"X-Forwarded-For": f"203.0.113.{i + 1}"})
            assert resp.status == 401
        resp = await client.post("/api/v1/auth/login", json={"username": name, "password": "guess-guess"},
                                 headers={"X-Forwarded-For": "203.0.113.99"})
        assert resp.status == 429  # the account is limited whatever the address
        resp = await client.post("/api/v1/auth/login", json={"username": f"else-{unique_id}", "password": "x-x-x-x"},
                                 headers={"X-Forwarded-For": "203.0.113.99"})
        assert resp.status == 401  # that address may still try another account


# -- item 6: WebSocket and SSE check Origin with the session cookie -----------------------------------------


async def test_sockets_and_streams_refuse_foreign_origins_with_the_cookie(client: test_utils.TestClient,
                                                                         unique_id: str) -> None:
    name = f"ws-{unique_id}"
    await client.post("/api/v1/auth/register", json={"username": name, "password": PASSWORD}, headers=ADMIN)
    resp = await client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert resp.status == 200
    token = (await resp.json())["token"]
    evil = {"Origin": "https://evil.example"}
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/comfy/ws?clientId=x", headers=evil)
    assert refused.value.status == 403
    resp = await client.get("/api/v1/stream", headers=evil)
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "FORBIDDEN"
    own = {"Origin": f"http://{client.host}:{client.port}"}
    ws = await client.ws_connect("/comfy/ws?clientId=x", headers=own)
    assert (await ws.receive_json(timeout=5))["type"] == "status"
    await ws.close()
    async with client.get("/api/v1/stream", headers=own) as resp:
        assert resp.status == 200
    client.session.cookie_jar.clear()
    ws = await client.ws_connect("/comfy/ws?clientId=x", headers={**evil, **bearer(token)})  # not the cookie
    await ws.close()


# -- item 10: passwords, old hashes, the admin key's failures ------------------------------------------------


async def test_common_passwords_are_refused(client: test_utils.TestClient, unique_id: str) -> None:
    for weak in ("password123", "Password1234", "qwertyuiop", "iloveyou12"):
        resp = await client.post("/api/v1/auth/register", json={"username": f"w-{unique_id}", "password": weak},
                                 headers=ADMIN)
        assert resp.status == 422, weak
        error = (await resp.json())["error"]
        assert error["code"] == "VALIDATION_FAILED" and "common" in error["message"]


async def test_old_password_hashes_are_upgraded_on_sign_in(nats_url: str, database_url: str, unique_id: str) -> None:
    env = gateway_env(nats_url, database_url)
    del env["STOKER_SCRYPT_N"]  # the production cost
    name = f"old-{unique_id}"
    conn = await asyncpg.connect(database_url)
    try:
        async with gateway_client(env) as client:
            user_id, _ = await user_token(client, name)
            old = passwords.hash_password(PASSWORD, n=2**14)
            await conn.execute("UPDATE gateway.users SET password_hash = $2 WHERE id = $1", user_id, old)
            resp = await client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
            assert resp.status == 200
            stored = await conn.fetchval("SELECT password_hash FROM gateway.users WHERE id = $1", user_id)
    finally:
        await conn.close()
    assert stored != old and stored.startswith(f"scrypt${2**17}$8$1$")
    assert passwords.verify_password(PASSWORD, stored)


async def test_failed_admin_key_attempts_are_recorded_with_the_address(client: test_utils.TestClient, js,
                                                                       unique_id: str) -> None:
    resp = await client.get("/api/v1/pool", headers={"X-Admin-Api-Key": "a-wrong-admin-key-guess-00000",
                                                     "X-Correlation-Id": unique_id})
    assert resp.status == 401

    async def rejected() -> list:
        return [r for r in await events_of(js, "ev.acct.admin.>")
                if type(r.event).__name__ == "AdminKeyRejected" and r.envelope.correlation_id == unique_id]

    [rec] = await eventually(rejected, timeout=10)
    assert rec.event.ip == "127.0.0.1" and rec.event.path == "/api/v1/pool" and rec.event.method == "GET"
    assert "wrong-admin-key" not in str(rec.event)
    await client.post("/api/v1/pool/safe-mode", json={"enabled": False, "reason": "x"}, headers=ADMIN)
    actions = [r for r in await events_of(js, "ev.acct.admin.>") if type(r.event).__name__ == "AdminActionPerformed"]
    assert actions and actions[-1].event.details.get("ip") == "127.0.0.1"


# -- item 5: behind a TLS-terminating reverse proxy ------------------------------------------------------------


PROXIED = {"X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "stoker.example"}


async def test_behind_a_trusted_proxy_cookies_origins_and_addresses_are_the_browsers(nats_url, database_url, js,
                                                                                     unique_id) -> None:
    env = gateway_env(nats_url, database_url, STOKER_TRUSTED_PROXIES="127.0.0.1, ::1")
    async with gateway_client(env) as client:
        name = f"proxied-{unique_id}"
        user_id, _ = await user_token(client, name)
        resp = await client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD}, headers=PROXIED)
        assert resp.status == 200
        assert resp.cookies["stoker_session"]["secure"]  # the browser spoke https to the proxy
        session = resp.cookies["stoker_session"].value
        resp = await client.post("/api/v1/tokens", json={"name": "from the UI"},
                                 headers={**PROXIED, "Origin": "https://stoker.example",
                                          "Cookie": f"stoker_session={session}"})
        assert resp.status == 201, await resp.text()  # the UI's own POST passes the origin check
        resp = await client.post("/api/v1/tokens", json={"name": "x"},
                                 headers={**PROXIED, "Origin": "https://evil.example",
                                          "Cookie": f"stoker_session={session}"})
        assert resp.status == 403
        client.session.cookie_jar.clear()
        # "this machine only" is for this machine, not for whoever the proxy forwards
        assert (await client.get("/metrics", headers=PROXIED)).status == 401
        resp = await client.post("/api/v1/admin/tokens", json={"vastai_api_key": "k" * 40},
                                 headers={**PROXIED, **ADMIN})
        assert resp.status == 403
        assert (await client.get("/metrics")).status == 200  # the proxy host itself, without forwarding
        logins = [r for r in await events_of(js, f"ev.acct.user.{user_id}")
                  if type(r.event).__name__ == "LoginSucceeded"]
        assert logins[-1].event.ip == "203.0.113.5"


async def test_forwarding_headers_from_an_unconfigured_proxy_are_not_believed(client: test_utils.TestClient,
                                                                             unique_id: str) -> None:
    name = f"direct-{unique_id}"
    await user_token(client, name)
    resp = await client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD}, headers=PROXIED)
    assert resp.status == 200 and not resp.cookies["stoker_session"]["secure"]
    session = resp.cookies["stoker_session"].value
    resp = await client.post("/api/v1/tokens", json={"name": "x"},
                             headers={**PROXIED, "Origin": "https://stoker.example",
                                      "Cookie": f"stoker_session={session}"})
    assert resp.status == 403  # the forwarded host is not believed
    client.session.cookie_jar.clear()
    # a loopback peer forwarding for someone else (a same-host proxy nobody configured) is not "this machine"
    assert (await client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.5"})).status == 401
    resp = await client.post("/api/v1/admin/tokens", json={"vastai_api_key": "k" * 40},
                             headers={"Forwarded": "for=203.0.113.5", **ADMIN})
    assert resp.status == 403

"""Accounts, tokens, the admin key, rate limits and security headers, against real NATS and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

import pytest
from aiohttp import test_utils

from libs.events import Recorded, subjects
from libs.events.replay import replay
from services.gateway.testing import (
    ADMIN,
    ADMIN_ACTOR,
    PASSWORD,
    bearer,
    gateway_client,
    gateway_env,
    user_token,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def client(nats_url: str, database_url: str) -> AsyncIterator[test_utils.TestClient]:
    async with gateway_client(gateway_env(nats_url, database_url)) as client:
        yield client


async def error_of(resp) -> dict:
    body = await resp.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
    return body["error"]


async def user_events(js, user_id: str) -> list[str]:
    names = []
    reader = replay(js, subjects.event_stream(subjects.ACCOUNTS), f"ev.acct.user.{user_id}")
    async with aclosing(reader):
        async for rec in reader:
            assert isinstance(rec, Recorded)
            names.append(type(rec.event).__name__)
    return names


async def test_register_login_me_logout(client: test_utils.TestClient, unique_id: str, js) -> None:
    name = f"alice-{unique_id}"
    resp = await client.post("/api/v1/auth/register", json={"username": name, "password": PASSWORD}, headers=ADMIN)
    assert resp.status == 201
    user = await resp.json()
    assert user["username"] == name and user["role"] == "user" and "password" not in str(user)
    resp = await client.post("/api/v1/auth/register", json={"username": name, "password": PASSWORD}, headers=ADMIN)
    assert resp.status == 409 and (await error_of(resp))["code"] == "CONFLICT"

    resp = await client.post("/api/v1/auth/login", json={"username": name, "password": "wrong password!"})
    assert resp.status == 401 and (await error_of(resp))["code"] == "AUTH_REQUIRED"
    resp = await client.post("/api/v1/auth/login", json={"username": "nobody-" + unique_id, "password": PASSWORD})
    assert resp.status == 401 and (await error_of(resp))["message"] == "wrong username or password"
    resp = await client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert resp.status == 200
    login = await resp.json()
    cookie = resp.cookies["stoker_session"]
    assert cookie.value == login["token"] and cookie["httponly"] and cookie["samesite"] == "Strict"

    me = await (await client.get("/api/v1/auth/me")).json()  # by the cookie
    assert me == {"actor": f"user:{user['id']}", "role": "user", "via": "session", "user_id": user["id"], "user": user}
    client.session.cookie_jar.clear()
    me = await (await client.get("/api/v1/auth/me", headers=bearer(login["token"]))).json()
    assert me["user"]["id"] == user["id"]
    resp = await client.post("/api/v1/auth/logout", headers=bearer(login["token"]))
    assert resp.status == 200 and await resp.json() == {"logged_out": True}
    resp = await client.get("/api/v1/auth/me", headers=bearer(login["token"]))
    assert resp.status == 401

    assert await user_events(js, user["id"]) == ["UserRegistered", "PasswordChanged", "LoginFailed", "LoginSucceeded",
                                                 "TokenRevoked"]


async def test_who_may_register_and_what_is_valid(client: test_utils.TestClient, unique_id: str) -> None:
    body = {"username": f"bob-{unique_id}", "password": PASSWORD}
    resp = await client.post("/api/v1/auth/register", json=body)
    assert resp.status == 401
    _, token = await user_token(client, f"carol-{unique_id}")
    resp = await client.post("/api/v1/auth/register", json=body, headers=bearer(token))
    assert resp.status == 403 and (await error_of(resp))["code"] == "FORBIDDEN"
    for bad in [{"username": "Bob Smith", "password": PASSWORD}, {"username": "bob-" + unique_id, "password": "short"},
                {"username": f"bob-{unique_id}", "password": PASSWORD, "role": "root"},
                {"username": f"bob-{unique_id}\n", "password": PASSWORD},
                {"username": f"bob-{unique_id}", "password": PASSWORD, "admin": True}, {"username": 7}]:
        resp = await client.post("/api/v1/auth/register", json=bad, headers=ADMIN)
        assert resp.status == 422, bad
        assert (await error_of(resp))["code"] == "VALIDATION_FAILED"
    resp = await client.post("/api/v1/auth/register", data=b"{nope", headers={**ADMIN, "Content-Type": "application/json"})
    assert resp.status == 400
    _, admin_token = await user_token(client, f"dana-{unique_id}", role="admin")
    resp = await client.post("/api/v1/auth/register", json=body, headers=bearer(admin_token))
    assert resp.status == 201


async def test_open_registration_only_in_dev_mode(nats_url: str, database_url: str, unique_id: str) -> None:
    env = gateway_env(nats_url, database_url, STOKER_DEV="1", STOKER_OPEN_REGISTRATION="1")
    async with gateway_client(env) as client:
        resp = await client.post("/api/v1/auth/register", json={"username": f"eve-{unique_id}", "password": PASSWORD})
        assert resp.status == 201
        resp = await client.post("/api/v1/auth/register",
                                 json={"username": f"eve2-{unique_id}", "password": PASSWORD, "role": "admin"})
        assert resp.status == 403
    env = gateway_env(nats_url, database_url, STOKER_OPEN_REGISTRATION="1")  # ignored outside dev mode
    async with gateway_client(env) as client:
        resp = await client.post("/api/v1/auth/register", json={"username": f"eve3-{unique_id}", "password": PASSWORD})
        assert resp.status == 401


async def test_tokens_are_shown_once_and_private(client: test_utils.TestClient, unique_id: str, js) -> None:
    frank_id, frank = await user_token(client, f"frank-{unique_id}")
    grace_id, grace = await user_token(client, f"grace-{unique_id}")
    resp = await client.post("/api/v1/tokens", json={"name": "ci", "expires_in_s": 3600}, headers=bearer(frank))
    assert resp.status == 201
    created = await resp.json()
    assert created["token"].startswith("stk_") and created["user_id"] == frank_id and created["expires_at"]
    api_token = created["token"]
    me = await (await client.get("/api/v1/auth/me", headers=bearer(api_token))).json()
    assert me["via"] == "token" and me["user"]["id"] == frank_id

    listed = (await (await client.get("/api/v1/tokens", headers=bearer(frank))).json())["items"]
    assert [t["id"] for t in listed] == [created["id"]] and "token" not in listed[0]
    assert api_token not in str(listed)
    assert (await (await client.get("/api/v1/tokens", headers=bearer(grace))).json())["items"] == []
    everyone = (await (await client.get("/api/v1/tokens", headers=ADMIN)).json())["items"]
    assert created["id"] in {t["id"] for t in everyone}

    resp = await client.delete(f"/api/v1/tokens/{created['id']}", headers=bearer(grace))
    assert resp.status == 404  # someone else's token is not even there
    resp = await client.post("/api/v1/tokens", json={"user_id": frank_id}, headers=bearer(grace))
    assert resp.status == 403
    resp = await client.post("/api/v1/tokens", json={"name": "x"}, headers=ADMIN)
    assert resp.status == 201  # for the admin key's own (built-in) account
    assert (await resp.json())["user_id"] == f"admin-{ADMIN_ACTOR.split(':')[1]}"
    resp = await client.post("/api/v1/tokens", json={"user_id": grace_id, "name": "issued"}, headers=ADMIN)
    assert resp.status == 201 and (await resp.json())["user_id"] == grace_id
    resp = await client.post("/api/v1/tokens", json={"user_id": "no-such-user"}, headers=ADMIN)
    assert resp.status == 404
    resp = await client.post("/api/v1/tokens", json={"expires_in_s": 5}, headers=bearer(frank))
    assert resp.status == 422

    resp = await client.delete(f"/api/v1/tokens/{created['id']}", headers=bearer(frank))
    assert resp.status == 200 and await resp.json() == {"id": created["id"], "revoked": True}
    resp = await client.get("/api/v1/auth/me", headers=bearer(api_token))
    assert resp.status == 401
    resp = await client.delete(f"/api/v1/tokens/{created['id']}", headers=bearer(frank))
    assert resp.status == 404
    resp = await client.get("/api/v1/auth/me", headers=bearer("stk_" + "x" * 43))
    assert resp.status == 401
    resp = await client.get("/api/v1/auth/me", headers={"Authorization": "Basic Zm9vOmJhcg=="})
    assert resp.status == 401
    events = await user_events(js, frank_id)
    assert events.count("TokenCreated") == 1 and events.count("TokenRevoked") == 1


async def test_admin_key_actor_is_a_fingerprint(client: test_utils.TestClient) -> None:
    me = await (await client.get("/api/v1/auth/me", headers=ADMIN)).json()
    assert me["actor"] == ADMIN_ACTOR and me["role"] == "admin" and me["via"] == "admin_key"
    assert me["user_id"] == me["user"]["id"] == f"admin-{ADMIN_ACTOR.split(':')[1]}"  # its built-in account
    assert ADMIN["X-Admin-Api-Key"] not in ADMIN_ACTOR
    resp = await client.get("/api/v1/auth/me", headers={"X-Admin-Api-Key": ADMIN["X-Admin-Api-Key"][:-1]})
    assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_without_an_admin_key_the_admin_role_is_unreachable(nats_url: str, database_url: str) -> None:
    env = gateway_env(nats_url, database_url)
    del env["STOKER_ADMIN_KEY"]
    async with gateway_client(env) as client:
        resp = await client.get("/api/v1/auth/me", headers={"X-Admin-Api-Key": ""})
        assert resp.status == 401


async def test_login_is_rate_limited_per_address(nats_url: str, database_url: str, unique_id: str) -> None:
    env = gateway_env(nats_url, database_url, STOKER_RATE_LIMIT_LOGIN="5/900")
    async with gateway_client(env) as client:
        for _ in range(5):
            resp = await client.post("/api/v1/auth/login", json={"username": f"x-{unique_id}", "password": "guess1234"})
            assert resp.status == 401
        resp = await client.post("/api/v1/auth/login", json={"username": f"x-{unique_id}", "password": "guess1234"})
        assert resp.status == 429
        assert (await error_of(resp))["code"] == "RATE_LIMITED"
        assert 170 <= int(resp.headers["Retry-After"]) <= 181  # one more attempt every 900/5 s


async def test_api_is_rate_limited_per_token_and_per_address(nats_url: str, database_url: str, unique_id: str) -> None:
    env = gateway_env(nats_url, database_url, STOKER_RATE_LIMIT_API="3/60")
    async with gateway_client(env) as client:
        _, ivan = await user_token(client, f"ivan-{unique_id}")
        _, judy = await user_token(client, f"judy-{unique_id}")
        for _ in range(3):
            assert (await client.get("/api/v1/auth/me", headers=bearer(ivan))).status == 200
        resp = await client.get("/api/v1/auth/me", headers=bearer(ivan))
        assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
        assert (await client.get("/api/v1/auth/me", headers=bearer(judy))).status == 200  # another token
        for _ in range(3):
            assert (await client.get("/api/v1/auth/me")).status == 401  # anonymous: counted per address
        resp = await client.get("/api/v1/auth/me")
        assert resp.status == 429
        assert (await client.get("/healthz")).status == 200  # probes are never limited
        resp = await client.get("/api/v1/auth/me", headers={"X-Admin-Api-Key": "guess"})
        assert resp.status == 429  # failed credentials count against the address too


async def test_security_headers_and_cors(nats_url: str, database_url: str) -> None:
    async with gateway_client(gateway_env(nats_url, database_url)) as client:
        for path in ("/healthz", "/api/v1/pool", "/no/such/page", "/api/docs"):
            resp = await client.get(path, headers={"Origin": "https://evil.example"})
            assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
            assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            assert resp.headers["Referrer-Policy"] == "no-referrer"
            assert "Access-Control-Allow-Origin" not in resp.headers
        resp = await client.options("/api/v1/pool", headers={"Origin": "https://evil.example",
                                                              "Access-Control-Request-Method": "GET"})
        assert resp.status == 405 and "Access-Control-Allow-Origin" not in resp.headers
    env = gateway_env(nats_url, database_url, STOKER_CORS_ORIGINS="https://ui.example, https://other.example/")
    async with gateway_client(env) as client:
        resp = await client.options("/api/v1/pool", headers={"Origin": "https://ui.example",
                                                              "Access-Control-Request-Method": "PUT"})
        assert resp.status == 204 and resp.headers["Access-Control-Allow-Origin"] == "https://ui.example"
        assert "PUT" in resp.headers["Access-Control-Allow-Methods"]
        resp = await client.get("/api/v1/pool", headers={"Origin": "https://other.example", **ADMIN})
        assert resp.headers["Access-Control-Allow-Origin"] == "https://other.example"
        resp = await client.get("/api/v1/pool", headers={"Origin": "https://evil.example", **ADMIN})
        assert "Access-Control-Allow-Origin" not in resp.headers


async def test_cross_site_writes_with_the_cookie_are_refused(client: test_utils.TestClient, unique_id: str) -> None:
    name = f"kim-{unique_id}"
    await client.post("/api/v1/auth/register", json={"username": name, "password": PASSWORD}, headers=ADMIN)
    resp = await client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert resp.status == 200
    resp = await client.post("/api/v1/tokens", json={"name": "x"}, headers={"Origin": "https://evil.example"})
    assert resp.status == 403
    own = f"http://{client.host}:{client.port}"
    resp = await client.post("/api/v1/tokens", json={"name": "x"}, headers={"Origin": own})
    assert resp.status == 201

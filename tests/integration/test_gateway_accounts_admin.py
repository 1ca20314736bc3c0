"""Account administration, sessions, password changes, tokens by username and the admin key's built-in account,
against real NATS and PostgreSQL; every change is an accounts event (so it reaches the audit log)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest
from aiohttp import test_utils

from libs.events import Recorded, subjects
from libs.events.replay import replay
from services.audit.chain import fingerprint
from services.gateway.testing import (
    ADMIN,
    ADMIN_KEY,
    PASSWORD,
    bearer,
    gateway_client,
    gateway_env,
    user_token,
)

pytestmark = pytest.mark.timeout(60)
BUILTIN_ID = f"admin-{fingerprint(ADMIN_KEY)}"
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
async def client(nats_url: str, database_url: str) -> AsyncIterator[test_utils.TestClient]:
    async with gateway_client(gateway_env(nats_url, database_url)) as client:
        yield client


async def body(resp: Any, status: int) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def user_events(js: Any, user_id: str) -> list[Recorded]:
    out = []
    async with aclosing(replay(js, subjects.event_stream(subjects.ACCOUNTS), f"ev.acct.user.{user_id}")) as reader:
        async for rec in reader:
            assert isinstance(rec, Recorded)
            out.append(rec)
    return out


async def login(client: test_utils.TestClient, username: str, password: str) -> Any:
    resp = await client.post("/api/v1/auth/login", json={"username": username, "password": password})
    client.session.cookie_jar.clear()
    return resp


async def test_the_admin_key_is_its_built_in_admin_account(client: test_utils.TestClient, js: Any) -> None:
    me = await body(await client.get("/api/v1/auth/me", headers=ADMIN), 200)
    assert me["via"] == "admin_key" and me["user_id"] == BUILTIN_ID
    assert me["user"]["id"] == BUILTIN_ID and me["user"]["role"] == "admin" and me["user"]["username"].startswith("admin")
    accounts = await body(await client.get("/api/v1/accounts", headers=ADMIN), 200)
    builtin = [a for a in accounts["items"] if a["builtin"]]
    assert [a["id"] for a in builtin] == [BUILTIN_ID]
    assert "UserRegistered" in [type(r.event).__name__ for r in await user_events(js, BUILTIN_ID)]

    for method, path, payload in (("POST", "disable", None), ("POST", "password", {"password": NEW_PASSWORD}),
                                  ("DELETE", "", None)):
        url = f"/api/v1/accounts/{BUILTIN_ID}" + (f"/{path}" if path else "")
        err = await body(await client.request(method, url, json=payload, headers=ADMIN), 409)
        assert err["error"]["code"] == "CONFLICT" and "STOKER_ADMIN_KEY" in err["error"]["message"]
    resp = await login(client, me["user"]["username"], "any password at all")  # it has no password
    assert resp.status == 401

    # The browser exchanges the key for a session of that account (a cookie, like sign-in).
    resp = await client.post("/api/v1/auth/admin-session", headers=ADMIN)
    session = await body(resp, 200)
    assert resp.cookies["stoker_session"].value == session["token"] and session["user"]["id"] == BUILTIN_ID
    me = await body(await client.get("/api/v1/auth/me", headers=bearer(session["token"])), 200)
    assert me["via"] == "session" and me["role"] == "admin" and me["user"]["id"] == BUILTIN_ID
    err = await body(await client.post("/api/v1/auth/admin-session", headers=bearer(session["token"])), 403)
    assert "X-Admin-Api-Key" in err["error"]["message"]

    token = await body(await client.post("/api/v1/tokens", json={"name": "mine"}, headers=ADMIN), 201)
    assert token["user_id"] == BUILTIN_ID  # the key's own account, no user_id needed


async def test_list_disable_enable_reset_and_delete(client: test_utils.TestClient, unique_id: str, js: Any) -> None:
    name = f"carol-{unique_id}"
    user_id, session = await user_token(client, name)
    api_token = (await body(await client.post("/api/v1/tokens", json={"name": "ci"}, headers=bearer(session)), 201))["token"]
    listed = {a["username"]: a for a in (await body(await client.get("/api/v1/accounts", headers=ADMIN), 200))["items"]}
    assert listed[name]["id"] == user_id and listed[name]["disabled"] is False and listed[name]["builtin"] is False
    assert listed[name]["sessions"] == 1 and listed[name]["tokens"] == 1
    err = await body(await client.get("/api/v1/accounts", headers=bearer(session)), 403)
    assert err["error"]["code"] == "FORBIDDEN"

    disabled = await body(await client.post(f"/api/v1/accounts/{user_id}/disable", headers=ADMIN), 200)
    assert disabled["disabled"] is True
    assert (await login(client, name, PASSWORD)).status == 401  # disabled: no sign-in
    for credential in (session, api_token):  # and no session or token works
        assert (await client.get("/api/v1/auth/me", headers=bearer(credential))).status == 401
    await body(await client.post(f"/api/v1/accounts/{user_id}/enable", headers=ADMIN), 200)
    assert (await client.get("/api/v1/auth/me", headers=bearer(api_token))).status == 200  # tokens come back
    assert (await client.get("/api/v1/auth/me", headers=bearer(session))).status == 401  # the session was ended

    reset = await body(await client.post(f"/api/v1/accounts/{user_id}/password", json={"password": NEW_PASSWORD},
                                         headers=ADMIN), 200)
    assert reset["username"] == name and reset["sessions_ended"] == 0
    assert (await login(client, name, PASSWORD)).status == 401
    assert (await login(client, name, NEW_PASSWORD)).status == 200
    short = await body(await client.post(f"/api/v1/accounts/{user_id}/password", json={"password": "short"},
                                         headers=ADMIN), 422)
    assert short["error"]["code"] == "VALIDATION_FAILED"

    await body(await client.delete(f"/api/v1/accounts/{user_id}", headers=ADMIN), 200)
    assert (await client.get("/api/v1/auth/me", headers=bearer(api_token))).status == 401
    listed = [a["username"] for a in (await body(await client.get("/api/v1/accounts", headers=ADMIN), 200))["items"]]
    assert name not in listed
    await body(await client.delete(f"/api/v1/accounts/{user_id}", headers=ADMIN), 404)
    await body(await client.post(f"/api/v1/accounts/{user_id}/disable", headers=ADMIN), 404)

    events = await user_events(js, user_id)
    types = [type(r.event).__name__ for r in events]
    for expected in ("UserDisabled", "SessionRevoked", "UserEnabled", "PasswordChanged", "UserDeleted"):
        assert expected in types, types
    assert types.index("UserDisabled") < types.index("UserEnabled") < types.index("UserDeleted")
    assert all(NEW_PASSWORD not in str(r.event) and PASSWORD not in str(r.event) for r in events)
    admin_acts = [r for r in events if type(r.event).__name__ in ("UserDisabled", "UserDeleted")]
    assert {r.envelope.actor for r in admin_acts} == {f"admin:{fingerprint(ADMIN_KEY)}"}


async def test_an_admin_cannot_disable_or_delete_their_own_account(client: test_utils.TestClient,
                                                                   unique_id: str) -> None:
    admin_id, session = await user_token(client, f"boss-{unique_id}", role="admin")
    for method, url in (("POST", f"/api/v1/accounts/{admin_id}/disable"), ("DELETE", f"/api/v1/accounts/{admin_id}")):
        err = await body(await client.request(method, url, headers=bearer(session)), 409)
        assert "your own account" in err["error"]["message"]


async def test_change_your_password_and_end_your_sessions(client: test_utils.TestClient, unique_id: str,
                                                          js: Any) -> None:
    name = f"dave-{unique_id}"
    user_id, first = await user_token(client, name)
    second = (await body(await login(client, name, PASSWORD), 200))["token"]
    third = (await body(await login(client, name, PASSWORD), 200))["token"]

    mine = (await body(await client.get("/api/v1/auth/sessions", headers=bearer(first)), 200))["items"]
    assert len(mine) == 3 and [s["current"] for s in mine].count(True) == 1
    assert {s["user_id"] for s in mine} == {user_id} and all("token" not in s for s in mine)
    other = next(s for s in mine if not s["current"])
    await body(await client.delete(f"/api/v1/auth/sessions/{other['id']}", headers=bearer(first)), 200)
    assert len((await body(await client.get("/api/v1/auth/sessions", headers=bearer(first)), 200))["items"]) == 2

    stranger_id, stranger = await user_token(client, f"erin-{unique_id}")
    err = await body(await client.get("/api/v1/auth/sessions", params={"user_id": user_id},
                                      headers=bearer(stranger)), 403)
    assert err["error"]["code"] == "FORBIDDEN"
    mine = (await body(await client.get("/api/v1/auth/sessions", headers=bearer(first)), 200))["items"]
    await body(await client.delete(f"/api/v1/auth/sessions/{mine[0]['id']}", headers=bearer(stranger)), 404)

    wrong = await body(await client.put("/api/v1/auth/password", json={"current_password": "not it at all",
                                                                       "new_password": NEW_PASSWORD},
                                        headers=bearer(first)), 403)
    assert wrong["error"]["message"] == "the current password is wrong"
    changed = await body(await client.put("/api/v1/auth/password", json={"current_password": PASSWORD,
                                                                         "new_password": NEW_PASSWORD},
                                          headers=bearer(first)), 200)
    assert changed["sessions_ended"] == 1  # the one left besides this one
    assert (await client.get("/api/v1/auth/me", headers=bearer(first))).status == 200  # this one stays
    for ended in (second, third):
        assert (await client.get("/api/v1/auth/me", headers=bearer(ended))).status == 401
    assert (await login(client, name, NEW_PASSWORD)).status == 200

    # An admin sees anyone's sessions and ends them.
    theirs = (await body(await client.get("/api/v1/auth/sessions", params={"user_id": stranger_id}, headers=ADMIN),
                         200))["items"]
    assert len(theirs) == 1
    await body(await client.delete(f"/api/v1/auth/sessions/{theirs[0]['id']}", headers=ADMIN), 200)
    assert (await client.get("/api/v1/auth/me", headers=bearer(stranger))).status == 401
    err = await body(await client.put("/api/v1/auth/password", json={"current_password": "x", "new_password": NEW_PASSWORD},
                                      headers=ADMIN), 409)
    assert "STOKER_ADMIN_KEY" in err["error"]["message"]
    types = [type(r.event).__name__ for r in await user_events(js, user_id)]
    assert types.count("SessionRevoked") == 2 and types.count("PasswordChanged") == 2  # registration + change


async def test_an_admin_makes_a_token_for_an_account_named_by_username(client: test_utils.TestClient,
                                                                        unique_id: str) -> None:
    name = f"frank-{unique_id}"
    user_id, session = await user_token(client, name)
    made = await body(await client.post("/api/v1/tokens", json={"name": "for frank", "username": name}, headers=ADMIN),
                      201)
    assert made["user_id"] == user_id
    me = await body(await client.get("/api/v1/auth/me", headers=bearer(made["token"])), 200)
    assert me["user"]["username"] == name
    err = await body(await client.post("/api/v1/tokens", json={"username": f"nobody-{unique_id}"}, headers=ADMIN), 404)
    assert "no account named" in err["error"]["message"]
    err = await body(await client.post("/api/v1/tokens", json={"username": name}, headers=bearer(session)), 403)
    assert err["error"]["code"] == "FORBIDDEN"
    err = await body(await client.post("/api/v1/tokens", json={"username": name, "user_id": user_id}, headers=ADMIN),
                     422)
    assert err["error"]["code"] == "VALIDATION_FAILED"


async def test_the_sign_in_page_learns_how_accounts_are_made(client: test_utils.TestClient, nats_url: str,
                                                              database_url: str, unique_id: str) -> None:
    assert await body(await client.get("/api/v1/auth/options"), 200) == {"open_registration": False}
    resp = await client.post("/api/v1/auth/register", json={"username": f"self-{unique_id}", "password": PASSWORD})
    assert resp.status == 401  # only an admin makes accounts here
    env = gateway_env(nats_url, database_url, STOKER_DEV="1", STOKER_OPEN_REGISTRATION="1")
    async with gateway_client(env) as open_client:
        assert await body(await open_client.get("/api/v1/auth/options"), 200) == {"open_registration": True}
        made = await body(await open_client.post("/api/v1/auth/register",
                                                 json={"username": f"self-{unique_id}", "password": PASSWORD}), 201)
        assert made["role"] == "user"

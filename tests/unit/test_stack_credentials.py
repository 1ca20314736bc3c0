"""Per-service credentials: the NATS permission table, the connect options, the credentials file, child envs."""

from __future__ import annotations

import stat
from pathlib import Path

from libs import natsconn
from libs.events import subjects
from libs.stack import natsauth
from libs.stack.credentials import NATS_USERS, PG_ROLES, Endpoints, load_or_create_credentials
from libs.stack.services import env_for


def _matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching: `*` one token, `>` the rest."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


def _can(user: str, action: str, subject: str) -> bool:
    perms = natsauth.service_permissions()[user]
    return any(_matches(p, subject) for p in getattr(perms, action))


def test_only_generation_reaches_its_secrets_bucket() -> None:
    bucket = subjects.GEN_SECRETS_BUCKET
    probes = [f"$JS.API.STREAM.INFO.KV_{bucket}", f"$JS.API.DIRECT.GET.KV_{bucket}.$KV.{bucket}.master",
              f"$JS.API.CONSUMER.CREATE.KV_{bucket}", f"$KV.{bucket}.master"]
    for user in natsauth.SERVICES:
        reach = any(_can(user, "publish", s) or _can(user, "subscribe", s) for s in probes)
        assert reach == (user == natsauth.GENERATION), user


def test_only_the_pool_receives_pool_commands_and_writes_pool_events() -> None:
    for user in natsauth.SERVICES:
        assert _can(user, "subscribe", "cmd.pool.default.set_provider_key") == (user == natsauth.POOL), user
        assert _can(user, "publish", "ev.pool.instance.x") == (user == natsauth.POOL), user
    assert _can(natsauth.GATEWAY, "publish", "cmd.pool.default.set_provider_key")
    assert not _can(natsauth.GENERATION, "publish", "cmd.pool.default.set_provider_key")
    assert _can(natsauth.GENERATION, "publish", "cmd.pool.default.claim")


def test_each_user_subscribes_only_below_its_own_inbox() -> None:
    for user in natsauth.SERVICES:
        inboxes = [s for s in natsauth.service_permissions()[user].subscribe if s.startswith("_INBOX")]
        assert inboxes == [f"_INBOX.{user}.>"], user
        assert not _can(user, "subscribe", "_INBOX.other.x")


def test_connect_options_take_credentials_from_the_url_or_the_environment() -> None:
    assert natsconn.auth_options("nats://gateway:pw@h:4222", {}) == {"inbox_prefix": "_INBOX.gateway"}
    assert natsconn.auth_options("nats://h:4222", {}) == {}
    opts = natsconn.auth_options("nats://h:4222", {"NATS_USER": "pool", "NATS_PASSWORD": "pw"})
    assert opts == {"user": "pool", "password": "pw", "inbox_prefix": "_INBOX.pool"}
    opts = natsconn.auth_options("nats://h:4222", {"NATS_CREDS": "/run/pool.creds", "NATS_INBOX_PREFIX": "_INBOX.pool"})
    assert opts == {"user_credentials": "/run/pool.creds", "inbox_prefix": "_INBOX.pool"}


def test_credentials_are_generated_once_and_kept_private(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    first = load_or_create_credentials(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert set(first.nats) == set(NATS_USERS) and set(first.postgres) == set(PG_ROLES)
    assert len({*first.nats.values(), *first.postgres.values()}) == len(NATS_USERS) + len(PG_ROLES)
    assert load_or_create_credentials(path) == first
    assert first.nats["pool"] not in repr(first)


def test_each_child_gets_only_its_own_credentials() -> None:
    endpoints = Endpoints(nats_url="nats://admin@h", database_url="postgresql://su@h/db",
                          nats_urls={u: f"nats://{u}:pw@h" for u in natsauth.SERVICES},
                          database_urls={"gateway": "postgresql://stoker_gateway:pw@h/db",
                                         "audit": "postgresql://stoker_audit:pw@h/db"})
    common = {"NATS_URL": "nats://admin@h", "DATABASE_URL": "postgresql://su@h/db", "AUDIT_HMAC_KEY": "k", "X": "1"}

    def child(name: str) -> dict[str, str]:
        return env_for(name, common, nats_url=endpoints.nats_for(name), database_url=endpoints.database_for(name))

    assert child("pool") == {"X": "1", "NATS_URL": "nats://pool:pw@h"}
    assert child("pool.sim") == {"X": "1"}
    assert child("gateway")["DATABASE_URL"] == "postgresql://stoker_gateway:pw@h/db"
    assert "AUDIT_HMAC_KEY" not in child("gateway"), "only the audit service holds the audit key"
    assert child("audit") == {"X": "1", "NATS_URL": "nats://audit:pw@h", "DATABASE_URL": "postgresql://stoker_audit:pw@h/db",
                              "AUDIT_HMAC_KEY": "k"}
    external = Endpoints(nats_url="nats://ext", database_url="postgresql://ext")
    assert external.nats_for("pool") == "nats://ext" and external.database_for("gateway") == "postgresql://ext"


def test_only_a_streams_owner_may_change_its_config() -> None:
    owners = {"EVENTS_POOL": natsauth.POOL, "EVENTS_GEN": natsauth.GENERATION, "JOBS": natsauth.GENERATION,
              "EVENTS_ACCT": natsauth.GATEWAY, "EVENTS_AUDIT": natsauth.AUDIT}
    for stream, owner in owners.items():
        for user in natsauth.SERVICES:
            assert _can(user, "publish", f"$JS.API.STREAM.UPDATE.{stream}") == (user == owner), (stream, user)
            assert _can(user, "publish", f"$JS.API.STREAM.CREATE.{stream}"), "any service may declare a missing one"
            assert not _can(user, "publish", f"$JS.API.STREAM.DELETE.{stream}")
            assert not _can(user, "publish", f"$JS.API.STREAM.PURGE.{stream}")

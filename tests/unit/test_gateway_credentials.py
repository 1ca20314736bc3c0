"""The gateway's pure pieces around credentials: config checks, passwords, tokens, rate limits, peers."""

from __future__ import annotations

import pytest

from services.gateway import passwords
from services.gateway.auth import Principal, admin_actor, is_loopback
from services.gateway.config import ConfigError, GatewayConfig, Rate, admin_key_problem
from services.gateway.ratelimit import Limiter, retry_after

BASE = {"NATS_URL": "nats://n", "DATABASE_URL": "postgresql://d"}
GOOD_KEY = "k3y-with-enough-entropy-7f2c9a1e5b"


@pytest.mark.parametrize("key", ["abc123", "changeme", "x" * 40, "CHANGEME", "your-admin-key"])
def test_weak_admin_keys_are_refused_outside_dev(key: str) -> None:
    with pytest.raises(ConfigError) as err:
        GatewayConfig.from_mapping({**BASE, "STOKER_ADMIN_KEY": key})
    assert key not in str(err.value)
    dev = GatewayConfig.from_mapping({**BASE, "STOKER_ADMIN_KEY": key, "STOKER_DEV": "1"})
    assert dev.startup_problem() is None


def test_an_empty_key_may_build_an_app_but_not_serve() -> None:
    config = GatewayConfig.from_mapping(BASE)
    assert config.startup_problem() == "STOKER_ADMIN_KEY is empty"
    assert GatewayConfig.from_mapping({**BASE, "STOKER_DEV": "1"}).startup_problem() is None
    good = GatewayConfig.from_mapping({**BASE, "STOKER_ADMIN_KEY": GOOD_KEY})
    assert good.startup_problem() is None and admin_key_problem(GOOD_KEY) is None
    assert GOOD_KEY not in repr(good)


def test_settings_are_read_from_the_mapping() -> None:
    config = GatewayConfig.from_mapping({**BASE, "STOKER_ADMIN_KEY": GOOD_KEY, "STOKER_CORS_ORIGINS": "https://a/, https://b",
                                         "STOKER_RATE_LIMIT_API": "10/1", "STOKER_RATE_LIMIT_LOGIN": "off",
                                         "STOKER_OPEN_REGISTRATION": "1", "STOKER_POOL_ID": "p9",
                                         "AUDIT_HMAC_KEY": "a", "HOME": "/root"})
    assert config.cors_origins == ("https://a", "https://b") and config.pool_id == "p9"
    assert config.api_rate == Rate(10, 1.0) and config.login_rate.count == 0
    assert config.open_registration is False  # only in dev mode
    # The audit key is not the gateway's business: it keeps only which chain to ask the audit service about.
    assert config.audit_chain == "main" and "'a'" not in repr(config) and not hasattr(config, "audit_env")
    assert GatewayConfig.from_mapping({**BASE, "AUDIT_CHAIN": "c7"}).audit_chain == "c7"
    with pytest.raises(ConfigError):
        GatewayConfig.from_mapping({**BASE, "AUDIT_CHAIN": "a.b"})
    with pytest.raises(ConfigError):
        GatewayConfig.from_mapping({**BASE, "STOKER_RATE_LIMIT_API": "lots"})
    with pytest.raises(ConfigError):
        GatewayConfig.from_mapping({"NATS_URL": "nats://n"})


def test_passwords_hash_with_scrypt_and_verify() -> None:
    stored = passwords.hash_password("correct horse battery", n=2**10)
    assert stored.startswith("scrypt$1024$8$1$") and "correct" not in stored
    assert passwords.verify_password("correct horse battery", stored)
    assert not passwords.verify_password("correct horse batterY", stored)
    assert not passwords.verify_password("x", "not-a-hash") and not passwords.verify_password("x", "md5$1$2$3$4$5")
    assert passwords.hash_password("same", n=2**10) != passwords.hash_password("same", n=2**10)  # salted


def test_tokens_are_random_and_stored_by_digest() -> None:
    token = passwords.new_token(passwords.API_TOKEN_PREFIX)
    assert token.startswith("stk_") and passwords.is_token_shaped(token)
    assert token != passwords.new_token(passwords.API_TOKEN_PREFIX)
    assert len(passwords.token_digest(token)) == 32 and len(passwords.token_fingerprint(token)) == 16
    assert passwords.token_fingerprint(token) not in token
    assert not passwords.is_token_shaped("Bearer nonsense") and not passwords.is_token_shaped("stk_short")


def test_rate_limit_bursts_then_refills() -> None:
    now = [0.0]
    limiter = Limiter(Rate(5, 900.0), clock=lambda: now[0])
    assert [limiter.hit("ip:a") for _ in range(5)] == [0.0] * 5
    wait = limiter.hit("ip:a")
    assert wait == pytest.approx(180.0) and retry_after(wait) == "180"
    assert limiter.hit("ip:b") == 0.0  # keys are independent
    now[0] = 179.0
    assert limiter.hit("ip:a") > 0
    now[0] = 181.0
    assert limiter.hit("ip:a") == 0.0
    assert retry_after(0.01) == "1"


def test_rate_limit_off_and_bounded_memory() -> None:
    assert Limiter(Rate(0, 1.0)).hit("x") == 0.0
    limiter = Limiter(Rate(1, 60.0), clock=lambda: 0.0, max_keys=2)
    for key in ("a", "b", "c"):
        limiter.hit(key)
    assert limiter.hit("a") == 0.0  # forgotten (least recently used), so it starts full again
    assert limiter.hit("c") > 0


@pytest.mark.parametrize("address, loopback", [("127.0.0.1", True), ("127.8.9.1", True), ("::1", True),
                                               ("::ffff:127.0.0.1", True), ("10.0.0.1", False),
                                               ("192.168.1.2", False), ("fe80::1%eth0", False), ("unknown", False),
                                               ("::ffff:10.0.0.1", False)])
def test_loopback_peers(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_admin_actor_is_a_fingerprint_and_roles_rank() -> None:
    actor = admin_actor(GOOD_KEY)
    assert actor.startswith("admin:") and len(actor) == 6 + 16 and GOOD_KEY not in actor
    assert actor == admin_actor(GOOD_KEY) != admin_actor(GOOD_KEY + "x")
    admin = Principal(role="admin", actor=actor, via="admin_key")
    user = Principal(role="user", actor="user:u1", via="token", user_id="u1", credential_id="t1")
    assert admin.allows("user") and admin.allows("admin") and user.allows("user") and not user.allows("admin")
    assert user.rate_key == "cred:t1" and admin.rate_key == f"cred:{actor}"


async def test_the_process_refuses_to_serve_without_a_safe_key() -> None:
    from services.gateway.__main__ import serve

    for env in (BASE, {**BASE, "STOKER_ADMIN_KEY": ""}):
        with pytest.raises(ConfigError, match="refusing to start"):
            await serve(env)

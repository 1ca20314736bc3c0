"""The gateway's secrets settings (pure): the seed's admin key refused, the seed's variable names accepted,
password hashing at today's cost, common passwords, rate-limit and connection settings."""

from __future__ import annotations

import pytest

from libs.observability.logs import secrets_from
from libs.stack.keys import resolve_stack_secrets
from services.gateway import passwords
from services.gateway.config import ConfigError, GatewayConfig, Rate
from services.gateway.ratelimit import Limiter

BASE = {"NATS_URL": "nats://n", "DATABASE_URL": "postgresql://d"}
GOOD_KEY = "k3y-with-enough-entropy-7f2c9a1e5b"


@pytest.mark.parametrize("key", ["secure_admin_key_change_me", "SECURE_ADMIN_KEY_CHANGE_ME",
                                 "my-admin-key-changeme-0123456789"])
def test_the_seed_default_admin_key_is_refused_outside_dev(key: str) -> None:
    with pytest.raises(ConfigError) as err:
        GatewayConfig.from_mapping({**BASE, "STOKER_ADMIN_KEY": key})
    assert key not in str(err.value)
    with pytest.raises(ConfigError):
        GatewayConfig.from_mapping({**BASE, "ADMIN_API_KEY": key})
    assert GatewayConfig.from_mapping({**BASE, "STOKER_ADMIN_KEY": key, "STOKER_DEV": "1"}).admin_key == key


def test_admin_api_key_is_an_alias() -> None:
    assert GatewayConfig.from_mapping({**BASE, "ADMIN_API_KEY": GOOD_KEY}).admin_key == GOOD_KEY
    both = GatewayConfig.from_mapping({**BASE, "ADMIN_API_KEY": "other-" + GOOD_KEY, "STOKER_ADMIN_KEY": GOOD_KEY})
    assert both.admin_key == GOOD_KEY  # the Stoker name wins
    assert GOOD_KEY in secrets_from({"ADMIN_API_KEY": GOOD_KEY})  # masked in logs under either name
    assert "hf_seedname" in secrets_from({"HUGGINGFACE_HUB_TOKEN": "hf_seedname"})


def test_stoker_up_takes_the_admin_key_from_the_seed_name(tmp_path) -> None:
    stack = resolve_stack_secrets({"ADMIN_API_KEY": GOOD_KEY, "AUDIT_HMAC_KEY": "h" * 32}, tmp_path, dev=False)
    assert stack.admin.value == GOOD_KEY and stack.admin.source == "env"


def test_scrypt_cost_follows_current_guidance_and_old_hashes_need_rehash() -> None:
    assert (passwords.SCRYPT_N, passwords.SCRYPT_R, passwords.SCRYPT_P) == (2**17, 8, 1)
    assert GatewayConfig.from_mapping(BASE).scrypt_n == 2**17
    old = passwords.hash_password("correct horse battery", n=2**14)
    assert passwords.needs_rehash(old) and not passwords.needs_rehash(old, n=2**14)
    assert passwords.needs_rehash("garbage")
    with pytest.raises(ConfigError):
        GatewayConfig.from_mapping({**BASE, "STOKER_SCRYPT_N": "1024"})  # below 2^14 only in dev
    with pytest.raises(ConfigError):
        GatewayConfig.from_mapping({**BASE, "STOKER_SCRYPT_N": "100000"})


def test_common_passwords_are_known() -> None:
    assert passwords.is_common("Password123") and passwords.is_common("qwertyuiop ")
    assert passwords.is_common("alice-in-wonderland", "Alice-in-Wonderland")  # the username itself
    assert not passwords.is_common("correct horse battery") and not passwords.is_common("tr0ub4dor&3-xq")


def test_account_rate_defaults_to_twice_the_token_rate() -> None:
    assert GatewayConfig.from_mapping({**BASE, "STOKER_RATE_LIMIT_API": "10/60"}).account_rate == Rate(20, 60.0)
    assert GatewayConfig.from_mapping({**BASE, "STOKER_RATE_LIMIT_API": "off"}).account_rate.count == 0
    config = GatewayConfig.from_mapping({**BASE, "STOKER_RATE_LIMIT_ACCOUNT": "5/1", "STOKER_MAX_TOKENS_PER_USER": "7"})
    assert config.account_rate == Rate(5, 1.0) and config.max_tokens_per_user == 7


def test_hit_all_takes_from_every_bucket_or_none_and_refunds() -> None:
    now = [0.0]
    limiter = Limiter(Rate(2, 100.0), clock=lambda: now[0])
    assert limiter.hit_all(("ip:a", "account:x")) == 0.0
    assert limiter.hit_all(("ip:b", "account:x")) == 0.0
    assert limiter.hit_all(("ip:c", "account:x")) == pytest.approx(50.0)  # the account is spent
    assert limiter.hit("ip:c") == 0.0 and limiter.hit("ip:c") == 0.0  # ...and took nothing from ip:c
    limiter.refund(("account:x",))
    assert limiter.hit_all(("ip:d", "account:x")) == 0.0

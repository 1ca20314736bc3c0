"""Audit chain crypto and redaction, pure: key ids, keyrings, canonical bytes, fingerprints, secrets."""

from datetime import datetime, timezone
from pathlib import Path

import pytest

from libs.events import codec
from libs.events.envelope import Aggregate, Metadata
from libs.events.generation import GenerationRequested
from libs.events.pool import InstanceTemplate, PoolConfig, PoolConfigured
from libs.events.store import EventStore
from services.audit.chain import (
    ZERO_HASH,
    Keyring,
    UnknownKey,
    audit_actor,
    canonical,
    checkpoint_valid,
    fingerprint,
    from_us,
    key_id,
    sign_checkpoint,
    to_us,
)
from services.audit.config import AuditConfig, ConfigError, keyring_from
from services.audit.domain import Message, describe
from services.audit.redact import REDACTED, is_secret_name, redact

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)


def test_key_id_is_a_stable_hmac_prefix_and_never_the_key() -> None:
    kid = key_id(b"hunter2-hunter2")
    assert kid == key_id(b"hunter2-hunter2") and len(kid) == 16
    assert kid != key_id(b"hunter3-hunter3")
    assert "hunter2" not in kid


def test_keyring_verifies_old_keys_and_hides_them() -> None:
    old, new = Keyring.from_strings("old-key-material"), Keyring.from_strings("new-key-material", ["old-key-material"])
    mac = old.sign(b"data")
    assert new.check(old.current_id, b"data", mac)
    assert not new.check(old.current_id, b"other", mac)
    assert new.current_id != old.current_id and set(new.ids) == {old.current_id, new.current_id}
    with pytest.raises(UnknownKey):
        Keyring.from_strings("x").check(old.current_id, b"data", mac)
    assert "key-material" not in repr(new)
    with pytest.raises(ValueError):
        Keyring(b"")


def test_config_accepts_the_old_salt_name_and_keeps_it_for_verification() -> None:
    base = {"NATS_URL": "nats://x", "DATABASE_URL": "postgresql://x"}
    assert keyring_from({"AUDIT_SALT": "salty"}).current_id == key_id(b"salty")
    both = keyring_from({"AUDIT_HMAC_KEY": "new", "AUDIT_SALT": "salty", "AUDIT_HMAC_OLD_KEYS": "a, b"})
    assert both.current_id == key_id(b"new")
    assert set(both.ids) == {key_id(k) for k in (b"new", b"salty", b"a", b"b")}
    with pytest.raises(ConfigError):
        AuditConfig.from_mapping(base)
    cfg = AuditConfig.from_mapping(base | {"AUDIT_HMAC_KEY": "topsecretvalue", "STOKER_ADMIN_KEY": "adminkey123"})
    assert "topsecretvalue" not in repr(cfg) and "adminkey123" not in repr(cfg)
    assert cfg.streams == ("EVENTS_POOL", "EVENTS_GEN", "EVENTS_ACCT", "EVENTS_AUDIT")
    with pytest.raises(ConfigError):
        AuditConfig.from_mapping(base | {"AUDIT_HMAC_KEY": "k", "AUDIT_BATCH": "many"})


def test_the_key_may_come_from_a_mounted_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "audit_key"
    secret.write_text("from-a-file\n", encoding="utf-8")
    assert keyring_from({"AUDIT_KEY_FILE": str(secret)}).current_id == key_id(b"from-a-file")
    assert keyring_from({"AUDIT_KEY_FILE": str(secret), "AUDIT_HMAC_KEY": "env"}).current_id == key_id(b"env")
    (tmp_path / "empty").write_text("  \n", encoding="utf-8")
    for path in (tmp_path / "empty", tmp_path / "missing"):
        with pytest.raises(ConfigError) as refused:
            keyring_from({"AUDIT_KEY_FILE": str(path)})
        assert "AUDIT_KEY_FILE" in str(refused.value)


def test_microsecond_times_round_trip() -> None:
    assert from_us(to_us(T0)) == T0
    assert to_us(T0.replace(tzinfo=None)) == to_us(T0)


def test_canonical_bytes_cover_every_field() -> None:
    args = [1, "e1", "S", 3, "ev.pool.x.y", "event", "T", "x", "y", "pool", 10, 20, "kid", ZERO_HASH, '{"a":1}']
    base = canonical(*args)
    for i, value in enumerate(args):
        changed = list(args)
        changed[i] = b"\x01" * 32 if isinstance(value, bytes) else (value + 1 if isinstance(value, int) else value + "!")
        assert canonical(*changed) != base, f"field {i} is not covered"


def test_checkpoint_signature_binds_every_field() -> None:
    kr = Keyring.from_strings("k")
    sig = sign_checkpoint(kr, "anchor", "main", 5, "aa", "bb", {"S": 3})
    assert checkpoint_valid(kr, "anchor", "main", 5, "aa", "bb", kr.current_id, {"S": 3}, "", sig)
    assert not checkpoint_valid(kr, "anchor", "main", 6, "aa", "bb", kr.current_id, {"S": 3}, "", sig)
    assert not checkpoint_valid(kr, "anchor", "main", 5, "aa", "bb", kr.current_id, {"S": 4}, "", sig)
    assert not checkpoint_valid(kr, "anchor", "other", 5, "aa", "bb", kr.current_id, {"S": 3}, "", sig)
    assert not checkpoint_valid(kr, "anchor", "main", 5, "aa", "bb", kr.current_id, {"S": 3}, "", "zz")


def test_admin_key_actors_become_fingerprints() -> None:
    key = "sk-admin-0123456789abcdefghij"
    assert audit_actor(key, frozenset({key})) == f"admin:{fingerprint(key)}"
    assert audit_actor(f"admin:{key}") == f"admin:{fingerprint(key)}"
    fp = fingerprint(key)
    assert audit_actor(f"admin:{fp}") == f"admin:{fp}"  # already a fingerprint: unchanged
    assert audit_actor("pool") == "pool" and audit_actor("user:42") == "user:42"


@pytest.mark.parametrize("name", ["key", "api_key", "apiKey", "X-Api-Key", "HF_TOKEN", "access_token", "password",
                                  "Authorization", "client_secret", "privateKey", "db_password", "AUDIT_SALT"])
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["idempotency_key", "key_id", "token_env", "prompt", "monkey_count", "keystone"])
def test_not_secret_names(name: str) -> None:
    assert not is_secret_name(name)


def test_redaction_is_recursive_and_keeps_shape() -> None:
    value = {"prompt": "a cat", "api_key": "sk-1", "nested": [{"token": "t", "ok": 1}, {"headers": {
        "Authorization": "Bearer abc"}}], "note": "Bearer xyz", "empty_token": None, "by": "admin:rawkey",
        "mention": "uses the hunter2key here"}
    out = redact(value, frozenset({"hunter2key"}))
    assert out["prompt"] == "a cat" and out["api_key"] == REDACTED
    assert out["nested"][0] == {"token": REDACTED, "ok": 1}
    assert out["nested"][1]["headers"]["Authorization"] == REDACTED
    assert out["note"] == REDACTED and out["empty_token"] is None
    assert out["by"] == f"admin:{fingerprint('rawkey')}" and out["mention"] == REDACTED
    assert value["api_key"] == "sk-1"  # the input is not modified


def test_describe_redacts_payload_and_fingerprints_actor() -> None:
    store = EventStore(None, clock=lambda: T0)  # type: ignore[arg-type]
    event = GenerationRequested(user_id="u1", params={"hf_token": "hf_abc", "prompt": "x"})
    env = store.envelope(Aggregate("gen", "job", "j1"), event, 1, Metadata(actor="admin:the-admin-key"))
    fact = describe(Message("EVENTS_GEN", "ev.gen.job.j1", 7, T0, codec.encode(env)))
    assert fact.event_id == env.id and fact.kind == "event" and fact.type == "GenerationRequested"
    assert (fact.aggregate_type, fact.aggregate_id, fact.stream_seq) == ("job", "j1", 7)
    assert fact.actor == f"admin:{fingerprint('the-admin-key')}" and "the-admin-key" not in fact.payload
    assert "hf_abc" not in fact.payload and codec.loads(fact.payload.encode())["event"]["params"]["prompt"] == "x"
    assert fact.occurred_at == T0


def test_describe_keeps_pool_config_token_env_names() -> None:
    store = EventStore(None, clock=lambda: T0)  # type: ignore[arg-type]
    event = PoolConfigured(pool_id="p", config=PoolConfig(template=InstanceTemplate(token_env=("HF_TOKEN",))))
    env = store.envelope(Aggregate("pool", "config", "p"), event, 1, Metadata(actor="pool"))
    fact = describe(Message("EVENTS_POOL", "ev.pool.config.p", 1, T0, codec.encode(env)))
    assert "HF_TOKEN" in fact.payload


def test_unreadable_message_is_described_not_dropped() -> None:
    fact = describe(Message("EVENTS_POOL", "ev.pool.instance.i9", 4, T0, b"\x00garbage"))
    assert fact.kind == "unreadable" and fact.event_id == "unreadable:EVENTS_POOL:4"
    assert (fact.aggregate_type, fact.aggregate_id) == ("instance", "i9")
    assert fact.error is not None and fact.error.kind == "malformed" and fact.data == b"\x00garbage"
    assert "garbage" not in fact.payload  # the bytes stay in the quarantine stream, only their digest here
    unknown = describe(Message("EVENTS_POOL", "ev.pool.instance.i9", 5, T0,
                               b'{"id":"x","schema":1,"event":{"type":"FromTheFuture"}}'))
    assert unknown.kind == "unreadable" and unknown.type == "FromTheFuture"


@pytest.mark.parametrize("key", [b"k", b"x" * 64, b"y" * 65, bytes(range(200))])
def test_prepared_hmac_is_rfc_2104_hmac_sha256(key: bytes) -> None:
    import hmac

    from services.audit.chain import hmac_sha256
    mac = hmac_sha256(key)
    for data in (b"", b"abc", b"z" * 1000):
        assert mac(data) == hmac.digest(key, data, "sha256")


def test_build_hashes_exactly_the_canonical_bytes() -> None:
    from services.audit.chain import record_hash
    from services.audit.domain import GENESIS, build
    store = EventStore(None, clock=lambda: T0)  # type: ignore[arg-type]
    env = store.envelope(Aggregate("gen", "job", "j1"), GenerationRequested(user_id="u"), 1, Metadata(actor="x"))
    kr = Keyring.from_strings("k")
    (row,), head = build(GENESIS, [describe(Message("EVENTS_GEN", "ev.gen.job.j1", 1, T0, codec.encode(env)))], kr, T0)
    data = canonical(*row[:10], to_us(row[10]), to_us(row[11]), row[13], row[14], row[12])
    assert record_hash(data) == row[15] == head.hash and kr.sign(data) == row[16]


def test_hostile_text_fields_become_column_safe() -> None:
    data = (b'{"id":"a\\u0000b","schema":1,"aggregate_type":"x","aggregate_id":"' + b"y" * 5000 + b'",'
            b'"aggregate_version":1,"occurred_at":"2026-01-01T00:00:00Z","actor":"u\\u0000",'
            b'"event":{"type":"PoolReset","pool_id":"p\\u0000","reason":"r"}}')
    fact = describe(Message("EVENTS_POOL", "ev.pool.x.y", 1, T0, data))
    assert fact.kind == "event" and "\x00" not in fact.event_id + fact.actor + fact.aggregate_id
    assert len(fact.aggregate_id) == 512 and fact.aggregate_id.endswith("\u2026")

"""The audit service's settings, read from an injected mapping (os.environ in production)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from libs.events import streams, subjects
from libs.observability import logs
from libs.events.ids import is_subject_token
from services.audit.chain import Keyring

APP_ROLE = "stoker_audit_app"
DEFAULT_STREAMS = tuple(subjects.event_stream(c) for c in subjects.CONTEXTS)


class ConfigError(ValueError):
    """The configuration is incomplete or invalid (never contains a key)."""


def _split(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def _key_file(path: str) -> str:
    """The key kept in a file (a mounted Docker or Kubernetes secret), surrounding whitespace removed."""
    try:
        key = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"AUDIT_KEY_FILE {path!r} cannot be read: {type(exc).__name__}") from None
    logs.redact(key)  # not in the environment, so the log filter learns it here
    return key


def keyring_from(env: Mapping[str, str]) -> Keyring:
    """The keyring: AUDIT_HMAC_KEY (or the file AUDIT_KEY_FILE names, or the old name AUDIT_SALT) signs;
    AUDIT_HMAC_OLD_KEYS verify.

    The file form keeps the key out of the environment (compose and Kubernetes mount it as a secret).
    When both AUDIT_HMAC_KEY and AUDIT_SALT are set, the salt is kept as an old key so records
    the old system signed with it still verify.
    """
    current = env.get("AUDIT_HMAC_KEY") or ""
    if not current and env.get("AUDIT_KEY_FILE"):
        current = _key_file(env["AUDIT_KEY_FILE"])
        if not current:
            raise ConfigError(f"AUDIT_KEY_FILE {env['AUDIT_KEY_FILE']!r} is empty")
    current = current or env.get("AUDIT_SALT") or ""
    if not current:
        raise ConfigError("AUDIT_HMAC_KEY (or AUDIT_KEY_FILE, or AUDIT_SALT) must be set")
    old = _split(env.get("AUDIT_HMAC_OLD_KEYS", ""))
    if env.get("AUDIT_SALT") and env.get("AUDIT_SALT") != current:
        old.append(env["AUDIT_SALT"])
    return Keyring.from_strings(current, old)


@dataclass(frozen=True)
class AuditConfig:
    """Everything the audit service needs; ``keyring`` and ``secrets`` never appear in its repr."""

    nats_url: str
    database_url: str
    keyring: Keyring = field(repr=False)
    chain: str = "main"
    durable: str = subjects.AUDIT_DURABLE
    streams: tuple[str, ...] = DEFAULT_STREAMS
    start: str = "all"  # "all": audit each stream from its first message; "new": from chain creation on
    batch: int = 1000
    anchor_every: int = 1000
    anchor_seconds: float = 10.0
    retention_days: float = 90.0
    prune_interval: float = 3600.0
    app_role: str = APP_ROLE
    secrets: frozenset[str] = field(default=frozenset(), repr=False)
    stream_replicas: int = 1

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> AuditConfig:
        """Build the config; NATS_URL, DATABASE_URL and AUDIT_HMAC_KEY (or AUDIT_SALT) are required."""
        missing = [name for name in ("NATS_URL", "DATABASE_URL") if not env.get(name)]
        if missing:
            raise ConfigError(f"missing configuration: {', '.join(missing)}")
        start = env.get("AUDIT_START", "all")
        if start not in ("all", "new"):
            raise ConfigError("AUDIT_START must be 'all' or 'new'")
        chain = env.get("AUDIT_CHAIN", "main")
        if not is_subject_token(chain):
            raise ConfigError(f"AUDIT_CHAIN {chain!r} cannot be a subject token")
        try:
            return cls(
                nats_url=env["NATS_URL"],
                database_url=env["DATABASE_URL"],
                keyring=keyring_from(env),
                chain=chain,
                durable=env.get("AUDIT_DURABLE") or subjects.AUDIT_DURABLE,
                streams=tuple(_split(env.get("AUDIT_STREAMS", ""))) or DEFAULT_STREAMS,
                start=start,
                batch=int(env.get("AUDIT_BATCH") or 1000),
                anchor_every=int(env.get("AUDIT_ANCHOR_EVERY") or 1000),
                anchor_seconds=float(env.get("AUDIT_ANCHOR_SECONDS") or 10.0),
                retention_days=float(env.get("AUDIT_RETENTION_DAYS") or 90.0),
                prune_interval=float(env.get("AUDIT_PRUNE_INTERVAL_S") or 3600.0),
                app_role=env.get("AUDIT_DB_ROLE", APP_ROLE),
                secrets=frozenset(filter(None, [env.get("STOKER_ADMIN_KEY", "")])),
                stream_replicas=streams.replicas_from(env),
            )
        except ValueError as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"invalid audit setting: {exc}") from None

"""The gateway's settings, read from an injected mapping (os.environ in production), and their checks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

MIN_ADMIN_KEY_LENGTH = 24
# Keys people copy from examples; refused outside dev mode whatever their length.
WELL_KNOWN_KEYS = frozenset({
    "admin", "adminadmin", "changeme", "change-me", "change_me", "changeit", "default", "dev", "password",
    "secret", "stoker", "stoker-admin", "test", "your-admin-key", "your_admin_key", "admin-api-key",
    "please-change-me", "replace-me", "changeme-changeme-changeme", "0123456789abcdef0123456789abcdef",
})


class ConfigError(ValueError):
    """The configuration is unusable (the message never contains a secret)."""


@dataclass(frozen=True)
class Rate:
    """A rate limit: ``count`` requests per ``per_s`` seconds; count 0 means unlimited."""

    count: int
    per_s: float

    @classmethod
    def parse(cls, raw: str, name: str) -> Rate:
        """Parse ``"100/60"`` (100 per 60 s); ``"0"`` or ``"off"`` disables the limit."""
        raw = raw.strip().lower()
        if raw in ("0", "off", "none", ""):
            return cls(0, 1.0)
        count, _, per = raw.partition("/")
        try:
            rate = cls(int(count), float(per or 60))
        except ValueError:
            raise ConfigError(f"{name} must look like 100/60 (requests/seconds), or off") from None
        if rate.count < 0 or rate.per_s <= 0:
            raise ConfigError(f"{name} must be a positive count per positive seconds")
        return rate


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def admin_key_problem(key: str) -> str | None:
    """Why an admin key is unsafe outside dev mode, or None when it is acceptable."""
    if not key:
        return "STOKER_ADMIN_KEY is empty"
    if len(key) < MIN_ADMIN_KEY_LENGTH:
        return f"STOKER_ADMIN_KEY is shorter than {MIN_ADMIN_KEY_LENGTH} characters"
    if key.strip().lower() in WELL_KNOWN_KEYS or len(set(key)) < 6:
        return "STOKER_ADMIN_KEY is a well-known or trivial value"
    return None


@dataclass(frozen=True)
class GatewayConfig:
    """Everything the gateway needs; ``admin_key`` and ``audit_env`` never appear in its repr."""

    nats_url: str
    database_url: str
    host: str = "127.0.0.1"
    port: int = 8080
    admin_key: str = field(default="", repr=False)
    dev: bool = False
    pool_id: str = "default"
    cors_origins: tuple[str, ...] = ()
    api_rate: Rate = Rate(100, 60.0)
    login_rate: Rate = Rate(5, 900.0)
    session_ttl_s: float = 12 * 3600.0
    open_registration: bool = False
    pool_timeout_s: float = 10.0
    prewarm_timeout_s: float = 60.0
    audit_env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> GatewayConfig:
        """Build the config; NATS_URL and DATABASE_URL are required.

        Outside dev mode a short or well-known admin key is refused here; an empty one leaves
        the admin role unreachable, and ``python -m services.gateway`` refuses to start with it.
        """
        missing = [name for name in ("NATS_URL", "DATABASE_URL") if not env.get(name)]
        if missing:
            raise ConfigError(f"missing configuration: {', '.join(missing)}")
        dev = _flag(env, "STOKER_DEV")
        admin_key = env.get("STOKER_ADMIN_KEY", "")
        problem = admin_key_problem(admin_key)
        if admin_key and problem and not dev:
            raise ConfigError(f"{problem}: refusing to start outside dev mode (set STOKER_DEV=1 for development)")
        try:
            return cls(
                nats_url=env["NATS_URL"],
                database_url=env["DATABASE_URL"],
                host=env.get("STOKER_GATEWAY_HOST") or "127.0.0.1",
                port=int(env.get("STOKER_GATEWAY_PORT") or 8080),
                admin_key=admin_key,
                dev=dev,
                pool_id=env.get("STOKER_POOL_ID") or "default",
                cors_origins=tuple(o.strip().rstrip("/") for o in env.get("STOKER_CORS_ORIGINS", "").split(",")
                                   if o.strip()),
                api_rate=Rate.parse(env.get("STOKER_RATE_LIMIT_API", "100/60"), "STOKER_RATE_LIMIT_API"),
                login_rate=Rate.parse(env.get("STOKER_RATE_LIMIT_LOGIN", "5/900"), "STOKER_RATE_LIMIT_LOGIN"),
                session_ttl_s=float(env.get("STOKER_SESSION_TTL_S") or 12 * 3600),
                open_registration=dev and _flag(env, "STOKER_OPEN_REGISTRATION"),
                pool_timeout_s=float(env.get("STOKER_POOL_TIMEOUT_S") or 10),
                prewarm_timeout_s=float(env.get("STOKER_PREWARM_TIMEOUT_S") or 60),
                audit_env={k: v for k, v in env.items() if k.startswith("AUDIT_") or k in ("NATS_URL", "DATABASE_URL")},
            )
        except ValueError as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"invalid gateway setting: {exc}") from None

    def startup_problem(self) -> str | None:
        """Why this config must not serve as a process (outside dev mode), or None."""
        if self.dev:
            return None
        return admin_key_problem(self.admin_key)

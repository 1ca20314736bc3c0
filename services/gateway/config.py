"""The gateway's settings, read from an injected mapping (os.environ in production), and their checks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from libs.events.ids import is_subject_token
from services.gateway.proxy import Network, parse_networks

MIN_ADMIN_KEY_LENGTH = 24
# Keys people copy from examples; refused outside dev mode whatever their length.
WELL_KNOWN_KEYS = frozenset({
    "admin", "adminadmin", "changeme", "change-me", "change_me", "changeit", "default", "dev", "password",
    "secret", "stoker", "stoker-admin", "test", "your-admin-key", "your_admin_key", "admin-api-key",
    "please-change-me", "replace-me", "changeme-changeme-changeme", "0123456789abcdef0123456789abcdef",
    "secure_admin_key_change_me",  # the seed's .env example
})
PLACEHOLDER_WORDS = ("changeme", "change_me", "change-me", "replace_me", "replace-me", "your_admin_key", "example")
# The seed's variable names, accepted as aliases (the Stoker name wins when both are set).
ADMIN_KEY_NAMES = ("STOKER_ADMIN_KEY", "ADMIN_API_KEY")
DEFAULT_SCRYPT_N = 2**17  # OWASP password storage guidance for scrypt: N=2^17, r=8, p=1


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


def _chain(name: str) -> str:
    if not is_subject_token(name):
        raise ConfigError(f"AUDIT_CHAIN {name!r} cannot be a subject token")
    return name


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def admin_key_problem(key: str) -> str | None:
    """Why an admin key is unsafe outside dev mode, or None when it is acceptable."""
    if not key:
        return "STOKER_ADMIN_KEY is empty"
    if len(key) < MIN_ADMIN_KEY_LENGTH:
        return f"STOKER_ADMIN_KEY is shorter than {MIN_ADMIN_KEY_LENGTH} characters"
    lowered = key.strip().lower()
    if lowered in WELL_KNOWN_KEYS or len(set(key)) < 6 or any(w in lowered for w in PLACEHOLDER_WORDS):
        return "STOKER_ADMIN_KEY is a well-known or trivial value"
    return None


def admin_key_of(env: Mapping[str, str]) -> str:
    """The admin key: STOKER_ADMIN_KEY, else the seed's ADMIN_API_KEY."""
    return next((env[name] for name in ADMIN_KEY_NAMES if env.get(name)), "")


def _scrypt_n(raw: str, dev: bool) -> int:
    n = int(raw)
    if n < 2 or n & (n - 1):
        raise ConfigError("STOKER_SCRYPT_N must be a power of two")
    if n < 2**14 and not dev:
        raise ConfigError("STOKER_SCRYPT_N below 16384 is only allowed in dev mode")
    return n


@dataclass(frozen=True)
class GatewayConfig:
    """Everything the gateway needs; ``admin_key`` never appears in its repr."""

    nats_url: str
    database_url: str
    host: str = "127.0.0.1"
    port: int = 8080
    admin_key: str = field(default="", repr=False)
    dev: bool = False
    pool_id: str = "default"
    cors_origins: tuple[str, ...] = ()
    api_rate: Rate = Rate(100, 60.0)  # per credential (a token, a session, the admin key), or per address
    account_rate: Rate = Rate(200, 60.0)  # per account, whatever token it uses
    login_rate: Rate = Rate(5, 900.0)  # failed sign-ins, per address and per account
    max_tokens_per_user: int = 50
    trusted_proxies: tuple[Network, ...] = ()
    scrypt_n: int = DEFAULT_SCRYPT_N
    header_timeout_s: float = 15.0  # a connection must send a complete request head within this
    body_timeout_s: float = 30.0  # and its body within this
    max_connections: int = 1000
    dependency_timeout_s: float = 2.0  # each call to PostgreSQL or NATS on a request's path
    session_ttl_s: float = 12 * 3600.0
    open_registration: bool = False
    pool_timeout_s: float = 10.0
    prewarm_timeout_s: float = 60.0
    audit_chain: str = "main"  # which chain the audit service is asked about (AUDIT_CHAIN); never its key

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
        admin_key = admin_key_of(env)
        problem = admin_key_problem(admin_key)
        if admin_key and problem and not dev:
            raise ConfigError(f"{problem}: refusing to start outside dev mode (set STOKER_DEV=1 for development)")
        try:
            api_rate = Rate.parse(env.get("STOKER_RATE_LIMIT_API", "100/60"), "STOKER_RATE_LIMIT_API")
            account_raw = env.get("STOKER_RATE_LIMIT_ACCOUNT")
            account_rate = (Rate.parse(account_raw, "STOKER_RATE_LIMIT_ACCOUNT") if account_raw is not None
                            else Rate(api_rate.count * 2, api_rate.per_s))
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
                api_rate=api_rate,
                account_rate=account_rate,
                login_rate=Rate.parse(env.get("STOKER_RATE_LIMIT_LOGIN", "5/900"), "STOKER_RATE_LIMIT_LOGIN"),
                max_tokens_per_user=max(1, int(env.get("STOKER_MAX_TOKENS_PER_USER") or 50)),
                trusted_proxies=parse_networks(env.get("STOKER_TRUSTED_PROXIES", "")),
                scrypt_n=_scrypt_n(env.get("STOKER_SCRYPT_N") or str(DEFAULT_SCRYPT_N), dev),
                header_timeout_s=float(env.get("STOKER_HEADER_TIMEOUT_S") or 15),
                body_timeout_s=float(env.get("STOKER_BODY_TIMEOUT_S") or 30),
                max_connections=max(10, int(env.get("STOKER_MAX_CONNECTIONS") or 1000)),
                dependency_timeout_s=float(env.get("STOKER_DEPENDENCY_TIMEOUT_S") or 2),
                session_ttl_s=float(env.get("STOKER_SESSION_TTL_S") or 12 * 3600),
                open_registration=dev and _flag(env, "STOKER_OPEN_REGISTRATION"),
                pool_timeout_s=float(env.get("STOKER_POOL_TIMEOUT_S") or 10),
                prewarm_timeout_s=float(env.get("STOKER_PREWARM_TIMEOUT_S") or 60),
                audit_chain=_chain(env.get("AUDIT_CHAIN") or "main"),
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

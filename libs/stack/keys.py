"""Secrets for the dev stack: taken from the environment, or generated once and kept 0600 in the data dir."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

ADMIN_KEY_ENV = "STOKER_ADMIN_KEY"
ADMIN_KEY_ALIAS = "ADMIN_API_KEY"  # the seed's name for it
AUDIT_HMAC_KEY_ENV = "AUDIT_HMAC_KEY"
ADMIN_KEY_FILE = "admin_key"
AUDIT_HMAC_KEY_FILE = "audit_hmac_key"


class MissingSecret(RuntimeError):
    """A secret that production mode requires is not set."""


@dataclass(frozen=True)
class Secret:
    """A secret value (never in repr) and where it came from."""

    value: str = field(repr=False)
    source: Literal["env", "file"]
    path: Path | None = None


def load_or_create_secret(path: Path, nbytes: int = 32) -> str:
    """Return the secret stored at `path`, creating it (mode 0600, exclusively) on first use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_text().strip()
        if not value:
            raise RuntimeError(f"{path} is empty; delete it to generate a new secret") from None
        return value
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(nbytes) + "\n")
    return path.read_text().strip()


def resolve_secret(env: Mapping[str, str], name: str, path: Path, *, dev: bool) -> Secret:
    """The secret from env var `name` if set; else, in dev mode only, the one kept at `path`."""
    value = env.get(name, "")
    if value:
        return Secret(value=value, source="env")
    if not dev:
        raise MissingSecret(f"{name} must be set in production mode (--prod)")
    return Secret(value=load_or_create_secret(path), source="file", path=path)


@dataclass(frozen=True)
class StackSecrets:
    """The secrets `stoker up` hands to every service."""

    admin: Secret
    audit_hmac: Secret


def resolve_stack_secrets(env: Mapping[str, str], data_dir: Path, *, dev: bool) -> StackSecrets:
    """The admin key and the audit HMAC key: from the environment, or (dev mode) kept in the data dir."""
    env = {**env, ADMIN_KEY_ENV: env.get(ADMIN_KEY_ENV) or env.get(ADMIN_KEY_ALIAS, "")}
    return StackSecrets(
        admin=resolve_secret(env, ADMIN_KEY_ENV, data_dir / ADMIN_KEY_FILE, dev=dev),
        audit_hmac=resolve_secret(env, AUDIT_HMAC_KEY_ENV, data_dir / AUDIT_HMAC_KEY_FILE, dev=dev),
    )

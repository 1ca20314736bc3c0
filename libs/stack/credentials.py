"""Credentials of the embedded servers: one NATS user and (where it uses the database) one PostgreSQL
role per service, generated once into the data dir (0600), and which of them each child gets."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from libs.stack import natsauth, pgroles
from libs.stack.postgres import SUPERUSER

CREDENTIALS_FILE = "credentials.json"
NATS_USERS = (*natsauth.SERVICES, natsauth.ADMIN)
PG_ROLES = (SUPERUSER, *pgroles.SCHEMAS)


@dataclass(frozen=True)
class StackCredentials:
    """Passwords by NATS user and by PostgreSQL role (never in a repr)."""

    nats: Mapping[str, str] = field(repr=False)
    postgres: Mapping[str, str] = field(repr=False)


def load_or_create_credentials(path: Path) -> StackCredentials:
    """The credentials kept at ``path``; missing ones (first run, or a newer Stoker) are generated."""
    try:
        stored = json.loads(path.read_text())
    except FileNotFoundError:
        stored = {}
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"{path} is unreadable ({exc}); delete it to generate new credentials") from None
    nats = dict(stored.get("nats", {}))
    postgres = dict(stored.get("postgres", {}))
    changed = False
    for table, names in ((nats, NATS_USERS), (postgres, PG_ROLES)):
        for name in names:
            if not table.get(name):
                table[name] = secrets.token_hex(24)
                changed = True
    if changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"nats": nats, "postgres": postgres}, out, indent=2)
        os.replace(tmp, path)
    path.chmod(0o600)
    return StackCredentials(nats=nats, postgres=postgres)


@dataclass(frozen=True)
class Endpoints:
    """Where the services connect: per service when the servers are ours, one URL each when external."""

    nats_url: str  # external, or the admin user's (tools)
    database_url: str  # external, or the superuser's (bootstrap only)
    nats_urls: Mapping[str, str] = field(default_factory=dict, repr=False)  # service -> URL with its user
    database_urls: Mapping[str, str] = field(default_factory=dict, repr=False)  # service -> DSN with its role

    def nats_for(self, service: str) -> str | None:
        """The NATS URL a service gets (None: it does not use NATS)."""
        if not self.nats_urls:
            return self.nats_url
        return self.nats_urls.get(service)

    def database_for(self, service: str) -> str | None:
        """The DSN a service gets (None: it does not use PostgreSQL)."""
        if not self.database_urls:
            return self.database_url
        return self.database_urls.get(service)

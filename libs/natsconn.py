"""Connecting to NATS with this process's own credentials.

The URL may carry them (``nats://user:password@host:4222``); otherwise ``NATS_USER`` and
``NATS_PASSWORD``, or a credentials file in ``NATS_CREDS``, from the environment. A user's replies
arrive under its own inbox prefix (``_INBOX.<user>``, or ``NATS_INBOX_PREFIX``), the only inbox its
NATS permissions let it subscribe to (see libs/stack/natsauth.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import nats
from nats.aio.client import Client

USER_ENV, PASSWORD_ENV, CREDS_ENV, INBOX_ENV = "NATS_USER", "NATS_PASSWORD", "NATS_CREDS", "NATS_INBOX_PREFIX"


def _url_user(url: str) -> str:
    first = url.split(",")[0].strip()
    try:
        return unquote(urlsplit(first).username or "")
    except ValueError:
        return ""


def auth_options(url: str, env: Mapping[str, str]) -> dict[str, Any]:
    """Keyword arguments for `nats.connect`: credentials from the environment and the inbox prefix."""
    opts: dict[str, Any] = {}
    if env.get(CREDS_ENV):
        opts["user_credentials"] = env[CREDS_ENV]
    user = env.get(USER_ENV, "")
    if user:
        opts["user"] = user
        opts["password"] = env.get(PASSWORD_ENV, "")
    prefix = env.get(INBOX_ENV) or (f"_INBOX.{user or _url_user(url)}" if user or _url_user(url) else "")
    if prefix:
        opts["inbox_prefix"] = prefix
    return opts


async def connect(url: str, *, env: Mapping[str, str] | None = None, **kwargs: Any) -> Client:
    """`nats.connect` with the credentials and inbox prefix of this process (``env``: os.environ)."""
    options = auth_options(url, os.environ if env is None else env)
    options.update(kwargs)
    return await nats.connect(url, **options)

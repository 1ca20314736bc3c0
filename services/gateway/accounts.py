"""Accounts: register, sign in and out, issue and revoke API tokens; each writes its row and its event together.

A row is written in a transaction that commits only after its event is appended, so the
accounts stream (and so the audit log) never misses an account, token or session that exists.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from libs.events import Aggregate, Metadata, subjects
from libs.events import accounts as acct
from libs.events.ids import new_id
from services.gateway import passwords, repository
from services.gateway.recorder import EventRecorder

log = logging.getLogger("stoker.gateway")


class BadCredentials(Exception):
    """Unknown username or wrong password (deliberately not saying which)."""


class NoSuchToken(Exception):
    """No live token with that id is visible to the caller."""


class NoSuchUser(Exception):
    """No account has that id."""


class TooManyTokens(Exception):
    """The account already has as many live API tokens as allowed."""



def user_aggregate(user_id: str) -> Aggregate:
    """The aggregate of one account's events."""
    return Aggregate(subjects.ACCOUNTS, acct.USER, user_id)


def user_json(row: Any) -> dict[str, Any]:
    """An account's public fields."""
    return {"id": row["id"], "username": row["username"], "role": row["role"], "created_at": row["created_at"]}


def token_json(row: Any) -> dict[str, Any]:
    """A token's public fields (never its value or digest)."""
    return {k: row[k] for k in ("id", "user_id", "name", "fingerprint", "created_at", "expires_at", "last_used_at")}


@dataclass
class Accounts:
    """The accounts use cases over the credential store and the accounts event stream."""

    pool: asyncpg.Pool
    recorder: EventRecorder
    clock: Callable[[], datetime]
    session_ttl: timedelta
    login_fingerprint_key: bytes  # keys the fingerprint of unknown usernames in LoginFailed
    scrypt_n: int = passwords.SCRYPT_N
    max_tokens: int = 50  # live API tokens per account
    # Each scrypt hash takes 128 MiB: at most two at once, whatever the number of sign-ins.
    hashing: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))

    async def _hash(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        async with self.hashing:
            return await asyncio.to_thread(fn, *args, **kwargs)

    async def register(self, username: str, password: str, role: acct.Role, meta: Metadata) -> dict[str, Any]:
        """Create an account (UsernameTaken if the name is in use)."""
        password_hash = await self._hash(passwords.hash_password, password, n=self.scrypt_n)
        user_id = new_id()
        async with self.pool.acquire() as conn, conn.transaction():
            row = await repository.insert_user(conn, user_id, username, password_hash, role, self.clock())
            await self.recorder.record(user_aggregate(user_id), [
                acct.UserRegistered(username=username, role=role),
                acct.PasswordChanged(credential_ref=f"gateway.users/{user_id}"),
            ], meta)
        return user_json(row)

    async def login(self, username: str, password: str, ip: str, meta: Metadata) -> tuple[str, dict[str, Any], Any]:
        """A new session token (shown once), the account and the session row; BadCredentials otherwise."""
        async with self.pool.acquire() as conn:
            row = await repository.user_for_login(conn, username)
        stored = row["password_hash"] if row is not None else await self._hash(passwords.dummy_hash, self.scrypt_n)
        ok = await self._hash(passwords.verify_password, password, stored)
        if row is None or not ok:
            await self._login_failed(username, row, ip, meta)
            raise BadCredentials()
        user_id = row["id"]
        if passwords.needs_rehash(stored, n=self.scrypt_n):
            await self._rehash(user_id, password, stored)
        token = passwords.new_token(passwords.SESSION_PREFIX)
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            session = await repository.insert_token(
                conn, token_id=new_id(), user_id=user_id, kind="session", name="session",
                digest=passwords.token_digest(token), fingerprint=passwords.token_fingerprint(token), now=now,
                expires_at=now + self.session_ttl)
            await self.recorder.record(user_aggregate(user_id), [acct.LoginSucceeded(ip=ip)],
                                       Metadata(actor=f"user:{user_id}", correlation_id=meta.correlation_id))
        return token, user_json(row), session

    async def _rehash(self, user_id: str, password: str, old: str) -> None:
        """Store the password again at today's cost (only if nobody changed it meanwhile)."""
        new = await self._hash(passwords.hash_password, password, n=self.scrypt_n)
        async with self.pool.acquire() as conn:
            await repository.replace_password_hash(conn, user_id, old, new)

    async def _login_failed(self, username: str, row: Any, ip: str, meta: Metadata) -> None:
        """Record a refused sign-in; an unknown name is kept only as a fingerprint (it may be a mistyped password)."""
        if row is not None:
            aggregate, name = user_aggregate(row["id"]), row["username"]
        else:
            digest = hmac.new(self.login_fingerprint_key, username.encode(), "sha256").hexdigest()[:16]
            aggregate, name = Aggregate(subjects.ACCOUNTS, "login", f"unknown-{digest}"), f"unknown:{digest}"
        try:
            await self.recorder.record(aggregate, [acct.LoginFailed(username=name, ip=ip)], meta)
        except Exception as exc:  # noqa: BLE001 -- the refusal stands either way; a lost event is logged
            log.error("could not record a failed sign-in: %s", type(exc).__name__)

    async def logout(self, token: str, meta: Metadata) -> bool:
        """End the session with this token; whether one was live."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await repository.revoke_session(conn, passwords.token_digest(token), self.clock())
            if row is None:
                return False
            await self.recorder.record(user_aggregate(row["user_id"]), [acct.TokenRevoked(token_id=row["id"])], meta)
        return True

    async def create_token(self, user_id: str, name: str, expires_in_s: int | None, meta: Metadata
                           ) -> tuple[str, dict[str, Any]]:
        """A new API token for ``user_id``: its value (shown once) and its public fields."""
        token = passwords.new_token(passwords.API_TOKEN_PREFIX)
        now = self.clock()
        expires = now + timedelta(seconds=expires_in_s) if expires_in_s else None
        token_id, fp = new_id(), passwords.token_fingerprint(token)
        async with self.pool.acquire() as conn, conn.transaction():
            if await repository.user_by_id(conn, user_id, lock=True) is None:
                raise NoSuchUser(user_id)
            if await repository.count_live_tokens(conn, user_id, now) >= self.max_tokens:
                raise TooManyTokens(self.max_tokens)
            row = await repository.insert_token(conn, token_id=token_id, user_id=user_id, kind="api", name=name,
                                                digest=passwords.token_digest(token), fingerprint=fp, now=now,
                                                expires_at=expires)
            await self.recorder.record(user_aggregate(user_id),
                                       [acct.TokenCreated(token_id=token_id, name=name, fingerprint=fp)], meta)
        return token, token_json(row)

    async def user(self, user_id: str) -> dict[str, Any] | None:
        """An account's public fields, or None."""
        async with self.pool.acquire() as conn:
            row = await repository.user_by_id(conn, user_id)
        return user_json(row) if row is not None else None

    async def list_tokens(self, user_id: str | None) -> list[dict[str, Any]]:
        """Live API tokens of one account (None: of every account)."""
        async with self.pool.acquire() as conn:
            return [token_json(r) for r in await repository.list_tokens(conn, user_id)]

    async def revoke_token(self, token_id: str, user_id: str | None, meta: Metadata) -> dict[str, Any]:
        """Revoke a token of ``user_id`` (None: of anyone); NoSuchToken if there is none to revoke."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await repository.revoke_token(conn, token_id, user_id, self.clock())
            if row is None:
                raise NoSuchToken(token_id)
            await self.recorder.record(user_aggregate(row["user_id"]), [acct.TokenRevoked(token_id=token_id)], meta)
        return token_json(row)

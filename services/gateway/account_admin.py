"""Managing accounts: the admin key's built-in account, the account list, disable/enable, passwords, deletion and
sessions. Each change writes its row and its accounts event together (as ``accounts.py`` does), so it is audited.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from libs.events import Metadata
from libs.events import accounts as acct
from libs.events.ids import new_id
from services.gateway import passwords, repository
from services.gateway.accounts import NoSuchUser, user_aggregate
from services.gateway.auth import admin_actor, builtin_admin_id
from services.gateway.recorder import EventRecorder

log = logging.getLogger("stoker.gateway")
BUILTIN_NAME = "admin"
NO_PASSWORD = "!"  # never a valid scrypt hash: the built-in account signs in with the admin key only


class BuiltinAccount(Exception):
    """The built-in admin account is the admin key's: it cannot be disabled, deleted or given a password."""


class WrongPassword(Exception):
    """The current password given for a password change is not the account's."""


class NoSuchSession(Exception):
    """No live session with that id is visible to the caller."""


def account_json(row: Any, builtin_id: str | None) -> dict[str, Any]:
    """An account as the admin list shows it."""
    return {"id": row["id"], "username": row["username"], "role": row["role"], "created_at": row["created_at"],
            "disabled": row["disabled"], "builtin": row["id"] == builtin_id,
            "sessions": row.get("sessions", 0), "tokens": row.get("tokens", 0)}


def session_json(row: Any, current: str | None) -> dict[str, Any]:
    """A sign-in session's public fields (never its value or digest)."""
    return {"id": row["id"], "user_id": row["user_id"], "username": row["username"], "created_at": row["created_at"],
            "expires_at": row["expires_at"], "last_used_at": row["last_used_at"], "current": row["id"] == current}


@dataclass
class AccountAdmin:
    """Account administration use cases over the credential store and the accounts event stream."""

    pool: asyncpg.Pool
    recorder: EventRecorder
    clock: Callable[[], datetime]
    admin_key: str
    session_ttl: timedelta
    scrypt_n: int = passwords.SCRYPT_N

    @property
    def builtin_id(self) -> str | None:
        """The built-in admin account's id (None without an admin key)."""
        return builtin_admin_id(self.admin_key) if self.admin_key else None

    async def ensure_builtin(self) -> str | None:
        """Create the admin key's account once (named ``admin``, or ``admin-<id>`` when that name is taken)."""
        user_id = self.builtin_id
        if user_id is None:
            return None
        meta = Metadata(actor=admin_actor(self.admin_key), correlation_id=new_id())
        for name in (BUILTIN_NAME, f"{BUILTIN_NAME}-{user_id[-6:]}"):
            async with self.pool.acquire() as conn:
                if await repository.user_by_id(conn, user_id) is not None:
                    return user_id
                try:
                    async with conn.transaction():
                        await repository.insert_user(conn, user_id, name, NO_PASSWORD, "admin", self.clock())
                        await self.recorder.record(user_aggregate(user_id),
                                                   [acct.UserRegistered(username=name, role="admin")], meta)
                    log.info("built-in admin account %s created for the admin key", name)
                    return user_id
                except repository.UsernameTaken:
                    if await repository.user_by_id(conn, user_id) is not None:  # another gateway made it
                        return user_id
        log.error("could not create the admin key's account: the names are taken")
        return None

    async def list(self) -> list[dict[str, Any]]:
        """Every account, by username."""
        async with self.pool.acquire() as conn:
            rows = await repository.list_users(conn, self.clock())
        return [account_json(r, self.builtin_id) for r in rows]

    def _guard(self, user_id: str) -> None:
        if user_id == self.builtin_id:
            raise BuiltinAccount(user_id)

    async def set_disabled(self, user_id: str, disabled: bool, meta: Metadata) -> dict[str, Any]:
        """Disable (ending its sessions) or enable an account."""
        self._guard(user_id)
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            row = await repository.set_disabled(conn, user_id, disabled)
            if row is None:
                raise NoSuchUser(user_id)
            events: list[Any] = []
            if disabled:
                ended = await repository.revoke_sessions_of(conn, user_id, now)
                events = [acct.UserDisabled(username=row["username"])]
                events += [acct.SessionRevoked(session_id=s, reason="account_disabled") for s in ended]
            else:
                events = [acct.UserEnabled(username=row["username"])]
            await self.recorder.record(user_aggregate(user_id), events, meta)
        return account_json(row, self.builtin_id)

    async def reset_password(self, user_id: str, password: str, meta: Metadata) -> dict[str, Any]:
        """An admin sets a new password; the account's sessions end."""
        self._guard(user_id)
        password_hash = await asyncio.to_thread(passwords.hash_password, password, n=self.scrypt_n)
        return await self._store_password(user_id, password_hash, None, meta)

    async def change_password(self, user_id: str, current: str, new: str, keep_session: str | None,
                              meta: Metadata) -> dict[str, Any]:
        """The user changes their own password (knowing the current one); their other sessions end."""
        self._guard(user_id)
        async with self.pool.acquire() as conn:
            row = await repository.account_by_id(conn, user_id)
        if row is None:
            raise NoSuchUser(user_id)
        if not await asyncio.to_thread(passwords.verify_password, current, row["password_hash"]):
            raise WrongPassword()
        password_hash = await asyncio.to_thread(passwords.hash_password, new, n=self.scrypt_n)
        return await self._store_password(user_id, password_hash, keep_session, meta)

    async def _store_password(self, user_id: str, password_hash: str, keep: str | None,
                              meta: Metadata) -> dict[str, Any]:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await repository.set_password(conn, user_id, password_hash)
            if row is None:
                raise NoSuchUser(user_id)
            ended = await repository.revoke_sessions_of(conn, user_id, self.clock(), keep=keep)
            await self.recorder.record(user_aggregate(user_id), [
                acct.PasswordChanged(credential_ref=f"gateway.users/{user_id}"),
                *[acct.SessionRevoked(session_id=s, reason="password_changed") for s in ended]], meta)
        return {**account_json(row, self.builtin_id), "sessions_ended": len(ended)}

    async def delete(self, user_id: str, meta: Metadata) -> dict[str, Any]:
        """Delete an account with its tokens and sessions (its events, jobs and outputs stay)."""
        self._guard(user_id)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await repository.delete_user(conn, user_id)
            if row is None:
                raise NoSuchUser(user_id)
            await self.recorder.record(user_aggregate(user_id), [acct.UserDeleted(username=row["username"])], meta)
        return account_json(row, self.builtin_id)

    async def user_id_by_name(self, username: str) -> str:
        """The id of the account called ``username``; NoSuchUser otherwise."""
        async with self.pool.acquire() as conn:
            user_id = await repository.user_id_by_name(conn, username)
        if user_id is None:
            raise NoSuchUser(username)
        return user_id

    async def sessions(self, user_id: str | None, current: str | None) -> list[dict[str, Any]]:
        """Live sessions of one account (None: of every account)."""
        async with self.pool.acquire() as conn:
            rows = await repository.list_sessions(conn, user_id, self.clock())
        return [session_json(r, current) for r in rows]

    async def revoke_session(self, session_id: str, user_id: str | None, meta: Metadata) -> dict[str, Any]:
        """End a session of ``user_id`` (None: of anyone); NoSuchSession if there is none to end."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await repository.revoke_session_id(conn, session_id, user_id, self.clock())
            if row is None:
                raise NoSuchSession(session_id)
            await self.recorder.record(user_aggregate(row["user_id"]), [acct.SessionRevoked(session_id=session_id)],
                                       meta)
        return {"id": row["id"], "revoked": True}

    async def admin_session(self, ip: str, meta: Metadata) -> tuple[str, dict[str, Any], datetime]:
        """A browser session of the built-in admin account, for the admin key: (token, account, expiry)."""
        user_id = await self.ensure_builtin()
        if user_id is None:
            raise NoSuchUser("admin")
        token = passwords.new_token(passwords.SESSION_PREFIX)
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            session = await repository.insert_token(
                conn, token_id=new_id(), user_id=user_id, kind="session", name="admin key",
                digest=passwords.token_digest(token), fingerprint=passwords.token_fingerprint(token), now=now,
                expires_at=now + self.session_ttl)
            user = await repository.user_by_id(conn, user_id)
            await self.recorder.record(user_aggregate(user_id), [acct.LoginSucceeded(ip=ip)], meta)
        assert user is not None
        return token, {k: user[k] for k in ("id", "username", "role", "created_at")}, session["expires_at"]


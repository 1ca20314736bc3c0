"""Who may do what on NATS: one user per service with publish/subscribe allow-lists (pure).

Derived from `libs.events.subjects`: each service publishes only its own context's events and the
commands it sends, subscribes only to the commands it answers, and reaches JetStream only through the
API subjects of the streams and buckets it uses (KV bucket B is stream ``KV_B``, object store B is
``OBJ_B``). Only the generation service may touch its secrets bucket; only the pool receives
``cmd.pool.*.set_provider_key``. Each user has its own reply-inbox prefix (``_INBOX.<user>``), so no
service can listen to another's replies. `render_authorization` writes the block for nats-server's
config; the same table feeds `stoker up`, the compose config and the Kubernetes NATS values.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from libs.events import subjects

POOL, GENERATION, AUDIT, GATEWAY = "pool", "generation", "audit", "gateway"
SERVICES = (POOL, GENERATION, AUDIT, GATEWAY)
ADMIN = "stoker-admin"  # operators' tools (and the test harness): every permission
USERS = (*SERVICES, ADMIN)
# Where compose and Kubernetes keep each user's password (nats-server reads them as $VARIABLES).
PASSWORD_ENV = {user: f"NATS_{user.upper()}_PASSWORD" for user in SERVICES} | {ADMIN: "NATS_ADMIN_PASSWORD"}

EVENT_STREAMS = tuple(subjects.event_stream(c) for c in subjects.CONTEXTS)
# Declared idempotently by every service at start (libs.events.streams.ensure_streams): any service may
# create them, only the owner may change an existing one's config (which could discard its history).
SHARED_STREAMS = (*EVENT_STREAMS, subjects.JOBS_STREAM, subjects.QUARANTINE_STREAM, f"KV_{subjects.CHECKPOINT_BUCKET}")
COMMON_STREAMS = (subjects.QUARANTINE_STREAM, f"KV_{subjects.CHECKPOINT_BUCKET}")  # every service updates these


def inbox_prefix(user: str) -> str:
    """The reply-inbox prefix of a user: its replies and consumer deliveries arrive below it."""
    return f"_INBOX.{user}"


def kv_stream(bucket: str) -> str:
    """The stream behind a key-value bucket."""
    return f"KV_{bucket}"


def obj_stream(bucket: str) -> str:
    """The stream behind an object-store bucket."""
    return f"OBJ_{bucket}"


def _api(*parts: str) -> str:
    return ".".join(("$JS.API", *parts))


def declare(stream: str, *, owner: bool = True) -> list[str]:
    """JetStream API subjects to look up and create one stream, and (its ``owner``) update it; never delete
    or purge."""
    out = [_api("STREAM.INFO", stream), _api("STREAM.CREATE", stream)]
    return out + [_api("STREAM.UPDATE", stream)] if owner else out


def owns(*streams: str) -> list[str]:
    """Updating the config of the streams a service owns."""
    return [_api("STREAM.UPDATE", stream) for stream in streams]


def read(stream: str, *, durable: bool = False) -> list[str]:
    """JetStream API subjects to read one stream: info, message gets, ephemeral (ordered) consumers; with
    ``durable``, also named consumers of its own, pulled and acknowledged (the audit feeds, the job queue)."""
    out = [
        _api("STREAM.INFO", stream),
        _api("STREAM.MSG.GET", stream),
        _api("DIRECT.GET", stream),
        _api("DIRECT.GET", stream, ">"),
        _api("CONSUMER.CREATE", stream),
        _api("CONSUMER.INFO", stream, ">"),
    ]
    if durable:
        out += [
            _api("CONSUMER.CREATE", stream, ">"),
            _api("CONSUMER.DURABLE.CREATE", stream, ">"),
            _api("CONSUMER.DELETE", stream, ">"),
            _api("CONSUMER.MSG.NEXT", stream, ">"),
            f"$JS.ACK.{stream}.>",
        ]
    return out


def kv(bucket: str, *, write: bool = True) -> list[str]:
    """Use a key-value bucket: read it, and (``write``) create it and put, update or delete keys."""
    stream = kv_stream(bucket)
    out = read(stream)
    if write:
        out += [*declare(stream), f"$KV.{bucket}.>"]
    return out


def objects(bucket: str, *, write: bool = True) -> list[str]:
    """Use an object-store bucket: read it, and (``write``) create it, put and delete objects."""
    stream = obj_stream(bucket)
    out = read(stream)
    if write:
        out += [*declare(stream), _api("STREAM.PURGE", stream), f"$O.{bucket}.>"]
    return out


def _pool_cmd(verb: str) -> str:
    return subjects.command(subjects.CMD_POOL, f"*.{verb}")


@dataclass(frozen=True)
class Permissions:
    """One user's allow-lists; replies to requests it received are allowed on top (allow_responses)."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    responds: bool = False


def _common(user: str) -> tuple[list[str], list[str]]:
    """What every service needs: declare the shared streams, checkpoints, quarantine, its own inbox."""
    publish = [_api("INFO"), "$JS.FC.>", subjects.QUARANTINE_SUBJECTS]
    for stream in SHARED_STREAMS:
        publish += declare(stream, owner=stream in COMMON_STREAMS)
    publish += kv(subjects.CHECKPOINT_BUCKET)
    return publish, [f"{inbox_prefix(user)}.>"]


def service_permissions() -> dict[str, Permissions]:
    """The least-privilege permissions of each service's NATS user."""
    gen_stream, pool_stream = subjects.event_stream(subjects.GENERATION), subjects.event_stream(subjects.POOL)
    extra: dict[str, tuple[list[str], list[str], bool]] = {
        POOL: (
            [subjects.events_filter(subjects.POOL), *owns(pool_stream), *read(pool_stream), *kv(subjects.LEASE_BUCKET),
             *kv(subjects.POOL_SECRETS_BUCKET), *kv(subjects.HEARTBEAT_BUCKET)],
            [f"{subjects.CMD_POOL}.>"],
            True,
        ),
        GENERATION: (
            [
                subjects.events_filter(subjects.GENERATION),
                *owns(gen_stream, subjects.JOBS_STREAM),
                f"{subjects.JOBS_SUBJECT}.>",
                "progress.gen.>",
                *(_pool_cmd(verb) for verb in ("claim", "release", "renew", "prewarm", "host_access")),
                *read(gen_stream),
                *read(pool_stream),
                *read(subjects.JOBS_STREAM, durable=True),
                _api("STREAM.MSG.DELETE", subjects.JOBS_STREAM),
                *kv(subjects.GEN_SECRETS_BUCKET),
                *objects(subjects.OUTPUT_BUCKET),
            ],
            [f"{subjects.CMD_GENERATION}.>", "progress.gen.*"],
            True,
        ),
        AUDIT: (
            [subjects.events_filter(subjects.AUDIT), *owns(subjects.event_stream(subjects.AUDIT)),
             *(s for stream in EVENT_STREAMS for s in read(stream, durable=True))],
            [f"{subjects.CMD_AUDIT}.>"],
            True,
        ),
        GATEWAY: (
            [
                subjects.events_filter(subjects.ACCOUNTS),
                *owns(subjects.event_stream(subjects.ACCOUNTS)),
                f"{subjects.CMD_POOL}.>",
                f"{subjects.CMD_GENERATION}.>",
                f"{subjects.CMD_AUDIT}.>",
                *(s for stream in EVENT_STREAMS for s in read(stream)),
                *objects(subjects.OUTPUT_BUCKET, write=False),
            ],
            ["progress.gen.*"],
            False,
        ),
    }
    out = {}
    for user, (publish, subscribe, responds) in extra.items():
        base_pub, base_sub = _common(user)
        out[user] = Permissions(tuple(dict.fromkeys(base_pub + publish)), tuple(dict.fromkeys(base_sub + subscribe)),
                                responds)
    return out


def _list(values: Iterable[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def render_authorization(passwords: Mapping[str, str], *, indent: str = "") -> str:
    """The ``authorization { users = [...] }`` block: each service its permissions, the admin all.

    ``passwords`` maps user names to passwords, or to ``$VAR`` references nats-server resolves from its
    environment (how compose and Kubernetes pass secrets in without writing them into a file).
    """
    perms = service_permissions()
    lines = [f"{indent}authorization {{", f"{indent}  users = ["]
    for user, password in passwords.items():
        value = password if password.startswith("$") else json.dumps(password)
        head = f"{indent}    {{user: {json.dumps(user)}, password: {value}"
        p = perms.get(user)
        if p is None:
            if user != ADMIN:
                raise ValueError(f"no NATS permissions defined for user {user!r}")
            lines.append(head + "}")
            continue
        lines.append(head + ", permissions: {")
        lines.append(f"{indent}      publish: {{allow: {_list(p.publish)}}}")
        lines.append(f"{indent}      subscribe: {{allow: {_list(p.subscribe)}}}")
        if p.responds:
            lines.append(f"{indent}      allow_responses: true")
        lines.append(f"{indent}    }}}}")
    lines += [f"{indent}  ]", f"{indent}}}"]
    return "\n".join(lines) + "\n"

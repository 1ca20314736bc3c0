"""Stream and bucket configurations, declared idempotently at start-up."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from . import subjects

log = logging.getLogger(__name__)

DUPLICATE_WINDOW_S = 120.0
REPLICAS_ENV = "STOKER_STREAM_REPLICAS"


def replicas_from(env: Mapping[str, str]) -> int:
    """Stream replica count from the environment (1 on one server, 3 on a 3-node JetStream cluster).

    Every service must use the same value: ``ensure_streams`` re-applies the config at each start.
    """
    value = int(env.get(REPLICAS_ENV) or "1")
    if value not in (1, 3, 5):
        raise ValueError(f"{REPLICAS_ENV} must be 1, 3 or 5, not {value}")
    return value


def event_stream_config(context: str, replicas: int = 1) -> StreamConfig:
    """An event stream: file storage, explicit duplicate window, no deletes or purges."""
    return StreamConfig(
        name=subjects.event_stream(context),
        subjects=[subjects.events_filter(context)],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        duplicate_window=DUPLICATE_WINDOW_S,
        deny_delete=True,
        deny_purge=True,
        allow_direct=True,
        allow_atomic=True,
        num_replicas=replicas,
    )


def jobs_stream_config(replicas: int = 1) -> StreamConfig:
    """The generation work queue: each job message is consumed by one worker."""
    return StreamConfig(
        name=subjects.JOBS_STREAM,
        subjects=[f"{subjects.JOBS_SUBJECT}.>"],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_S,
        num_replicas=replicas,
    )


def quarantine_stream_config(replicas: int = 1) -> StreamConfig:
    """Messages consumers could not process, kept 30 days for inspection."""
    return StreamConfig(
        name=subjects.QUARANTINE_STREAM,
        subjects=[subjects.QUARANTINE_SUBJECTS],
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_S,
        max_age=30 * 24 * 3600.0,
        num_replicas=replicas,
    )


def all_stream_configs(replicas: int = 1) -> list[StreamConfig]:
    """Every stream Stoker needs."""
    configs = [event_stream_config(c, replicas) for c in subjects.CONTEXTS]
    return configs + [jobs_stream_config(replicas), quarantine_stream_config(replicas)]


# The settings Stoker chooses; a stream whose settings already match is left alone.
_COMPARED = ("subjects", "retention", "storage", "discard", "duplicate_window", "deny_delete", "deny_purge",
             "allow_direct", "allow_atomic", "num_replicas", "max_age")


def config_differs(current: StreamConfig, wanted: StreamConfig) -> bool:
    """Whether a stream's current config lacks any setting of the wanted one."""
    return any(getattr(wanted, f, None) is not None and getattr(current, f, None) != getattr(wanted, f, None)
               for f in _COMPARED)


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create the stream, or update it to this config if it differs; never delete data.

    Only a stream's owning service may update it (libs/stack/natsauth.py): another service's refused
    update times out, is logged, and leaves the stream to its owner.
    """
    assert config.name is not None
    try:
        info = await js.stream_info(config.name)
    except NotFoundError:
        try:
            await js.add_stream(config)
            return
        except BadRequestError as exc:  # created concurrently by another service
            if exc.err_code != 10058:
                raise
        info = await js.stream_info(config.name)
    if not config_differs(info.config, config):
        return
    try:
        await js.update_stream(config)
    except nats.errors.TimeoutError:
        log.warning("stream %s differs from this version's config but could not be updated (not this "
                    "service's stream?); its owner updates it", config.name)


async def ensure_streams(js: JetStreamContext, replicas: int = 1) -> None:
    """Declare all streams and buckets idempotently (safe to run from every service)."""
    for config in all_stream_configs(replicas):
        await ensure_stream(js, config)
    await ensure_bucket(js, subjects.CHECKPOINT_BUCKET, history=1, replicas=replicas)


async def ensure_bucket(js: JetStreamContext, bucket: str, *, history: int = 1, ttl: float | None = None,
                        replicas: int = 1) -> None:
    """Create a KV bucket if missing."""
    try:
        await js.key_value(bucket)
    except (NotFoundError, Exception) as exc:  # nats-py raises BucketNotFoundError (a NotFoundError)
        if not isinstance(exc, NotFoundError):
            raise
        await js.create_key_value(KeyValueConfig(bucket=bucket, history=history, ttl=ttl,
                                                 storage=StorageType.FILE, replicas=replicas))

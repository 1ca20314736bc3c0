"""Reading a stream in order with an ordered consumer: the shared core of projectors and replay."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime
from typing import NamedTuple

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy


class Delivery(NamedTuple):
    """One raw stream message with its position."""

    subject: str
    seq: int
    pending: int
    timestamp: datetime
    data: bytes


def start_config(start_seq: int = 0, start_time: datetime | None = None) -> ConsumerConfig:
    """Consumer config that starts at a stream sequence, a time, or the beginning."""
    if start_time is not None:
        return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME,
                              opt_start_time=start_time, ack_policy=AckPolicy.NONE)
    if start_seq > 1:
        return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                              opt_start_seq=start_seq, ack_policy=AckPolicy.NONE)
    return ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE)


def to_delivery(msg: Msg) -> Delivery:
    """Position facts of a message delivered by an ordered consumer."""
    meta = msg.metadata
    return Delivery(msg.subject, meta.sequence.stream, meta.num_pending, meta.timestamp, msg.data)


async def subscribe_ordered(js: JetStreamContext, stream: str, filter_subject: str, *,
                            start_seq: int = 0, start_time: datetime | None = None) -> JetStreamContext.PushSubscription:
    """An ordered push consumer over ``filter_subject`` from a start point (no acks, flow controlled)."""
    return await js.subscribe(filter_subject, stream=stream, ordered_consumer=True,
                              config=start_config(start_seq, start_time),
                              pending_msgs_limit=512 * 1024, pending_bytes_limit=256 * 1024 * 1024)


async def nothing_pending(sub: JetStreamContext.PushSubscription) -> bool:
    """True when a fresh ordered consumer has no message to deliver at all."""
    info = await sub.consumer_info()
    delivered = info.delivered.consumer_seq if info.delivered else 0
    return info.num_pending == 0 and not delivered


async def read_until_caught_up(js: JetStreamContext, stream: str, filter_subject: str, *,
                               start_seq: int = 0, start_time: datetime | None = None
                               ) -> AsyncGenerator[Delivery, None]:
    """Yield matching messages from a start point until none are pending, then stop."""
    sub = await subscribe_ordered(js, stream, filter_subject, start_seq=start_seq, start_time=start_time)
    try:
        if await nothing_pending(sub):
            return
        async for msg in sub.messages:
            delivery = to_delivery(msg)
            yield delivery
            if delivery.pending == 0:
                return
    finally:
        await sub.unsubscribe()

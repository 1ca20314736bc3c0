"""Signed checkpoints on JetStream, outside the database: anchors of the chain head and prune records."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import aclosing
from datetime import datetime

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from libs.events import NEW, Aggregate, ConcurrencyError, Metadata, Position, codec, subjects
from libs.events.audit import CHAIN, AuditAnchored, AuditPruned
from libs.events.ids import new_id
from libs.events.reader import read_until_caught_up
from libs.events.store import EventStore
from services.audit.chain import ZERO_HASH, Keyring, sign_checkpoint
from services.audit.domain import Head
from services.audit.verify import ANCHOR, ORIGIN, PRUNE, Checkpoint

log = logging.getLogger("stoker.audit")
ACTOR = "audit"
MAX_CONFLICTS = 5


def chain_aggregate(chain: str) -> Aggregate:
    """The aggregate whose events are one chain's checkpoints."""
    return Aggregate(subjects.AUDIT, CHAIN, chain)


def anchor_event(keyring: Keyring, chain: str, head: Head, cursors: Mapping[str, int]) -> AuditAnchored:
    """A signed anchor of the chain head."""
    h, m = head.hash.hex(), head.hmac.hex()
    sig = sign_checkpoint(keyring, ANCHOR, chain, head.seq, h, m, cursors)
    return AuditAnchored(chain=chain, seq=head.seq, hash=h, hmac=m, key_id=keyring.current_id,
                         cursors=dict(cursors), signature=sig)


def prune_extra(cutoff: str, count: int) -> str:
    """The signed extra text of a prune checkpoint."""
    return f"cutoff={cutoff};count={count}"


def pruned_checkpoint(keyring: Keyring, chain: str, seq: int, hash_: bytes, hmac_: bytes,
                      cursors: Mapping[str, int], cutoff: datetime, count: int) -> Checkpoint:
    """A signed prune checkpoint: records through ``seq`` are gone, the rest chains from ``hash_``."""
    extra = prune_extra(cutoff.isoformat(), count)
    sig = sign_checkpoint(keyring, PRUNE, chain, seq, hash_.hex(), hmac_.hex(), cursors, extra)
    return Checkpoint(PRUNE, seq, hash_, hmac_, keyring.current_id, dict(cursors), extra, sig, "db")


def origin_checkpoint(keyring: Keyring, chain: str, cursors: Mapping[str, int], start: str) -> Checkpoint:
    """The chain's signed origin: the stream positions it starts after."""
    extra = f"start={start}"
    sig = sign_checkpoint(keyring, ORIGIN, chain, 0, ZERO_HASH.hex(), "", cursors, extra)
    return Checkpoint(ORIGIN, 0, ZERO_HASH, b"", keyring.current_id, dict(cursors), extra, sig, "db")


def pruned_event(chain: str, cp: Checkpoint, cutoff: datetime, count: int) -> AuditPruned:
    """The JetStream copy of a prune checkpoint."""
    return AuditPruned(chain=chain, through_seq=cp.seq, hash=cp.hash.hex(), hmac=cp.hmac.hex(), key_id=cp.key_id,
                       cursors=dict(cp.cursors), cutoff=cutoff.isoformat(), count=count, signature=cp.signature)


def _bytes(hex_: str) -> bytes:
    try:
        return bytes.fromhex(hex_)
    except ValueError:
        return b"\x00"  # a malformed checkpoint: its signature cannot verify


def to_checkpoint(event: object) -> Checkpoint | None:
    """A checkpoint event as the verifier sees it (None for other events)."""
    if isinstance(event, AuditAnchored):
        return Checkpoint(ANCHOR, event.seq, _bytes(event.hash), _bytes(event.hmac), event.key_id, event.cursors,
                          "", event.signature, "nats")
    if isinstance(event, AuditPruned):
        return Checkpoint(PRUNE, event.through_seq, _bytes(event.hash), _bytes(event.hmac), event.key_id,
                          event.cursors, prune_extra(event.cutoff, event.count), event.signature, "nats")
    return None


async def load_checkpoints(js: JetStreamContext, chain: str) -> list[Checkpoint]:
    """Every checkpoint event of ``chain`` on JetStream (undecodable ones are logged and skipped)."""
    agg = chain_aggregate(chain)
    found: list[Checkpoint] = []
    reader = read_until_caught_up(js, subjects.event_stream(subjects.AUDIT), subjects.aggregate_subject(agg))
    try:
        async with aclosing(reader):
            async for d in reader:
                try:
                    cp = to_checkpoint(codec.decode(d.data).event)
                except codec.DecodeError as exc:
                    log.warning("checkpoint at seq %d does not decode: %s", d.seq, exc)
                    continue
                if cp is not None:
                    found.append(cp)
    except NotFoundError:  # no audit stream (yet): no anchors
        return []
    return found


class Anchors:
    """Publishes a chain's checkpoint events with checked appends."""

    def __init__(self, js: JetStreamContext, chain: str) -> None:
        self._js = js
        self._store = EventStore(js)
        self.aggregate = chain_aggregate(chain)
        self.subject = subjects.aggregate_subject(self.aggregate)
        self._position: Position | None = None
        self.published = 0

    async def _load_position(self) -> Position:
        stream = subjects.event_stream(subjects.AUDIT)
        try:
            last = await self._js.get_last_msg(stream, self.subject)
        except NotFoundError:
            return NEW
        assert last.seq is not None and last.data is not None
        return Position(codec.decode(last.data).aggregate_version, last.seq)

    async def publish(self, event: AuditAnchored | AuditPruned) -> None:
        """Append one checkpoint event (idempotent on retry: same event id)."""
        event_id = new_id()
        for _ in range(MAX_CONFLICTS):
            if self._position is None:
                self._position = await self._load_position()
            try:
                recorded = await self._store.append(self.aggregate, [event], self._position, Metadata(actor=ACTOR),
                                                    event_ids=[event_id])
            except ConcurrencyError:
                self._position = None  # someone else appended (another instance?): reload and retry
                continue
            except BaseException:
                self._position = None
                raise
            env = recorded[-1].envelope
            self._position = Position(env.aggregate_version, recorded[-1].seq)
            self.published += 1
            return
        raise ConcurrencyError(self.subject, -1, "checkpoint append kept conflicting")

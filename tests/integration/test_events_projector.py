"""Projectors against a real JetStream: resume after a kill, poison messages, live follow."""

import asyncio
import logging
import random

import msgspec
import pytest

from libs.events import NEW, Aggregate, Metadata, Recorded, codec, streams, subjects
from libs.events.checkpoints import KeyValueCheckpoints
from libs.events.envelope import Envelope
from libs.events.ids import new_id
from libs.events.pool import PoolReset, PrewarmRequested
from libs.events.projector import Projection, Projector
from libs.events.store import EventStore

META = Metadata(actor="test")


class Tally(msgspec.Struct, frozen=True):
    """A deliberately non-idempotent, order-sensitive view: double-applying or skipping shows."""

    events: int = 0
    total: int = 0
    digest: int = 0
    per_aggregate: dict[str, int] = {}


def project(view: Tally, rec: Recorded) -> Tally:
    event = rec.event
    amount = event.count if isinstance(event, PrewarmRequested) else 0
    per = dict(view.per_aggregate)
    per[rec.envelope.aggregate_id] = per.get(rec.envelope.aggregate_id, 0) + 1
    return Tally(events=view.events + 1, total=view.total + amount,
                 digest=(view.digest * 1_000_003 + rec.seq * 7 + amount) % (2**61 - 1), per_aggregate=per)


def projection(type_token: str, name: str) -> Projection[Tally]:
    return Projection(name=name, stream=subjects.event_stream(subjects.POOL),
                      filter_subject=f"ev.pool.{type_token}.*", initial=Tally(), project=project,
                      view_type=Tally)


async def write_events(store: EventStore, type_token: str, n: int, aggregates: int = 20) -> int:
    aggs = [Aggregate(subjects.POOL, type_token, new_id()) for _ in range(aggregates)]
    positions = {a: NEW for a in aggs}
    last = 0
    for i in range(n):
        agg = aggs[i % aggregates]
        rec = await store.append(agg, [PrewarmRequested(pool_id="p", count=i % 7 + 1)], positions[agg], META)
        positions[agg] = (rec[0].envelope.aggregate_version, rec[0].seq)
        last = rec[0].seq
    return last


@pytest.fixture
async def store(js):
    await streams.ensure_streams(js)
    return EventStore(js)


async def full_replay(js, type_token: str, seqs: list[int] | None = None) -> Projector[Tally]:
    fresh = Projector(js, projection(type_token, f"fresh-{new_id()}"))
    if seqs is not None:
        fresh.listen(lambda view, rec: seqs.append(rec.seq))
    await fresh.start()
    await fresh.wait_caught_up(60)
    await fresh.stop(checkpoint=False)
    return fresh


async def test_killed_mid_replay_resumes_to_the_same_state(js, store):
    token = "t" + new_id().replace("-", "")[-12:]
    await write_events(store, token, 3000)
    checkpoints = KeyValueCheckpoints(js)
    name = f"tally-{token}"
    rng = random.Random(7)
    resumed_from = []
    for _kill in range(3):
        projector = Projector(js, projection(token, name), checkpoints=checkpoints, checkpoint_every=150)
        await projector.start()
        resumed_from.append(projector.seq)
        target = rng.randint(projector.applied + 100, projector.applied + 900)
        while projector.applied < target and not projector.caught_up:
            await asyncio.sleep(0.001)
        await projector.stop(checkpoint=False)  # a crash: whatever was not checkpointed is lost
    final = Projector(js, projection(token, name), checkpoints=checkpoints, checkpoint_every=150)
    await final.start()
    start_seq = final.seq
    await final.wait_caught_up(60)
    await final.stop()
    seqs: list[int] = []
    fresh = await full_replay(js, token, seqs)

    assert resumed_from[0] == 0 and max(resumed_from) > 0, "later runs must resume from a checkpoint"
    assert start_seq > 0
    # The view is order-sensitive and not idempotent: equal means nothing lost, nothing twice.
    assert final.view == fresh.view
    assert final.view.events == 3000 and len(seqs) == 3000
    # The last run applied exactly the events its checkpoint did not contain.
    assert final.applied == len([s for s in seqs if s > start_seq])


async def test_poison_messages_are_reported_kept_and_skipped(js, store, caplog):
    token = "t" + new_id().replace("-", "")[-12:]
    agg_subject = f"ev.pool.{token}.x"
    good = Envelope(id=new_id(), schema=1, aggregate_type=token, aggregate_id="x", aggregate_version=1,
                    occurred_at=store.envelope(Aggregate("pool", token, "x"), PoolReset(pool_id="p"), 1,
                                               META).occurred_at,
                    actor="test", event=PrewarmRequested(pool_id="p", count=5))
    good_bytes = codec.encode(good)
    unknown = good_bytes.replace(b"PrewarmRequested", b"PrewarmExploded")
    newer = good_bytes.replace(b'"schema":1', b'"schema":99')
    for payload in [good_bytes, b"\x00\x01 garbage", unknown, newer, good_bytes.replace(b'"count":5', b'"count":6')]:
        await js.publish(agg_subject, payload)

    name = f"poison-{token}"
    projector = Projector(js, projection(token, name))
    with caplog.at_level(logging.ERROR):
        await projector.start()
        await projector.wait_caught_up(10)
    assert projector.view.total == 11 and projector.view.events == 2, "good events around the bad ones apply"
    assert projector.quarantine.counts == {"malformed": 1, "unknown_type": 1, "newer_schema": 1}
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "malformed" in logged and "PrewarmExploded" in logged and "schema 99" in logged

    # Still running: a later good event is applied.
    await js.publish(agg_subject, good_bytes.replace(b'"count":5', b'"count":1'))
    ack = await js.publish(agg_subject, good_bytes.replace(b'"count":5', b'"count":2'))
    await projector.wait_for(ack.seq, 10)
    assert projector.view.total == 14
    await projector.stop(checkpoint=False)

    # Kept for inspection in the quarantine stream, with the original bytes and why.
    sub = await js.subscribe(subjects.quarantine_subject(name), ordered_consumer=True)
    kept = [await sub.next_msg(timeout=5) for _ in range(3)]
    await sub.unsubscribe()
    assert [m.headers["Stoker-Reason"] for m in kept] == ["malformed", "unknown_type", "newer_schema"]
    assert kept[0].data == b"\x00\x01 garbage"
    assert all(m.headers["Stoker-Subject"] == agg_subject for m in kept)


async def test_follows_live_and_reads_own_writes(js, store):
    token = "t" + new_id().replace("-", "")[-12:]
    projector = Projector(js, projection(token, f"live-{token}"))
    await projector.start()
    await projector.wait_caught_up(5)
    assert projector.view == Tally()
    last = await write_events(store, token, 50, aggregates=5)
    await projector.wait_for(last, 10)
    assert projector.view.events == 50
    seen = []
    projector.listen(lambda view, rec: seen.append(rec.seq))
    last = await write_events(store, token, 3, aggregates=1)
    await projector.wait_for(last, 10)
    assert seen[-1] == last and len(seen) == 3
    await projector.stop(checkpoint=False)

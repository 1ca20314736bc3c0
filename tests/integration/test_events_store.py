"""The event store against a real JetStream: optimistic concurrency, dedupe, atomic batches."""

import asyncio

import nats
import pytest

from libs.events import NEW, Aggregate, ConcurrencyError, Metadata, streams, subjects
from libs.events.ids import new_id
from libs.events.pool import PoolReset, PrewarmRequested
from libs.events.store import EventStore

META = Metadata(actor="test", correlation_id="corr-1")


def aggregate() -> Aggregate:
    return Aggregate(subjects.POOL, "storetest", new_id())


@pytest.fixture
async def store(js):
    await streams.ensure_streams(js)
    return EventStore(js)


async def test_two_writers_same_expected_version_one_wins(store, nats_url):
    agg = aggregate()
    first = await store.append(agg, [PoolReset(pool_id="p")], NEW, META)
    position = (await store.load(agg)).position
    assert position == (1, first[0].seq)

    other = await nats.connect(nats_url)
    try:
        rival = EventStore(other.jetstream())
        results = await asyncio.gather(
            store.append(agg, [PrewarmRequested(pool_id="p", count=1)], position, META),
            rival.append(agg, [PrewarmRequested(pool_id="p", count=2)], position, META),
            return_exceptions=True,
        )
    finally:
        await other.close()
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], ConcurrencyError)
    history = await store.load(agg)
    assert len(history) == 2
    assert history.position.version == 2


async def test_new_aggregate_expects_no_history(store):
    agg = aggregate()
    await store.append(agg, [PoolReset(pool_id="p")], NEW, META)
    with pytest.raises(ConcurrencyError):
        await store.append(agg, [PoolReset(pool_id="p")], NEW, META)


async def test_retried_publish_of_same_event_id_is_stored_once(store, js):
    agg = aggregate()
    ids = [new_id()]
    first = await store.append(agg, [PoolReset(pool_id="p")], NEW, META, event_ids=ids)
    again = await store.append(agg, [PoolReset(pool_id="p")], NEW, META, event_ids=ids)
    assert [r.seq for r in again] == [r.seq for r in first]
    assert len(await store.load(agg)) == 1
    # A different event at the same position is a real conflict, not a duplicate.
    with pytest.raises(ConcurrencyError):
        await store.append(agg, [PoolReset(pool_id="p")], NEW, META)


async def test_multi_event_append_is_atomic_and_ordered(store):
    agg = aggregate()
    recorded = await store.append(agg, [PrewarmRequested(pool_id="p", count=n) for n in range(1, 4)], NEW, META)
    assert [r.envelope.aggregate_version for r in recorded] == [1, 2, 3]
    assert [r.seq for r in recorded] == sorted(r.seq for r in recorded)
    history = await store.load(agg)
    assert [e.count for e in history.events] == [1, 2, 3]
    assert [r.seq for r in history] == [r.seq for r in recorded]
    # A stale batch stores none of its events.
    with pytest.raises(ConcurrencyError):
        await store.append(agg, [PrewarmRequested(pool_id="p", count=9)] * 2, NEW, META)
    assert len(await store.load(agg)) == 3
    # A retried batch (same ids) is stored once.
    ids = [new_id(), new_id()]
    pos = history.position
    a = await store.append(agg, [PoolReset(pool_id="a"), PoolReset(pool_id="b")], pos, META, event_ids=ids)
    b = await store.append(agg, [PoolReset(pool_id="a"), PoolReset(pool_id="b")], pos, META, event_ids=ids)
    assert [r.seq for r in a] == [r.seq for r in b]
    assert len(await store.load(agg)) == 5


async def test_envelope_carries_metadata(store):
    agg = aggregate()
    meta = Metadata(actor="admin:ab12", causation_id="cmd-1", correlation_id="corr-9",
                    traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    await store.append(agg, [PoolReset(pool_id="p")], NEW, meta)
    env = (await store.load(agg))[0].envelope
    assert (env.actor, env.causation_id, env.correlation_id) == ("admin:ab12", "cmd-1", "corr-9")
    assert env.traceparent == meta.traceparent
    assert env.aggregate_id == agg.id and env.aggregate_type == agg.type
    assert env.occurred_at.tzinfo is not None


async def test_load_of_unknown_aggregate_is_empty(store):
    history = await store.load(aggregate())
    assert len(history) == 0 and history.position == NEW


async def test_streams_are_declared_idempotently_with_safety_settings(js):
    await streams.ensure_streams(js)
    await streams.ensure_streams(js)
    info = await js.stream_info(subjects.event_stream(subjects.POOL))
    cfg = info.config
    assert cfg.deny_delete and cfg.deny_purge
    assert cfg.storage == "file"
    assert cfg.duplicate_window == streams.DUPLICATE_WINDOW_S

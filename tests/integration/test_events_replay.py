"""Replay for incident review: a filter between two sequences or two times, bad messages reported."""

import asyncio
from datetime import datetime, timezone

from libs.events import NEW, Aggregate, Metadata, streams, subjects
from libs.events.ids import new_id
from libs.events.pool import PrewarmRequested
from libs.events.replay import Unreadable, replay
from libs.events.store import EventStore


async def collect(it):
    return [x async for x in it]


async def test_replay_between_sequences_and_times(js):
    await streams.ensure_streams(js)
    store = EventStore(js)
    token = "r" + new_id().replace("-", "")[-12:]
    agg = Aggregate(subjects.POOL, token, "a")
    other = Aggregate(subjects.POOL, token, "b")
    stream = subjects.event_stream(subjects.POOL)
    recs = []
    pos = NEW
    for n in range(1, 6):
        r = await store.append(agg, [PrewarmRequested(pool_id="p", count=n)], pos, Metadata(actor="t"))
        pos = (r[0].envelope.aggregate_version, r[0].seq)
        recs.append(r[0])
        await store.append(other, [PrewarmRequested(pool_id="p", count=100 + n)], (await store.load(other)).position,
                           Metadata(actor="t"))
    mid_time = datetime.now(timezone.utc)
    await asyncio.sleep(0.05)
    broken = await js.publish(subjects.aggregate_subject(agg), b"{broken")
    await store.append(agg, [PrewarmRequested(pool_id="p", count=6)], (pos[0], broken.seq), Metadata(actor="t"))

    only_a = await collect(replay(js, stream, subjects.aggregate_subject(agg)))
    assert [x.event.count for x in only_a if not isinstance(x, Unreadable)] == [1, 2, 3, 4, 5, 6]
    assert sum(isinstance(x, Unreadable) for x in only_a) == 1

    window = await collect(replay(js, stream, subjects.aggregate_subject(agg), since=recs[1].seq, until=recs[3].seq))
    assert [x.event.count for x in window] == [2, 3, 4]

    both = await collect(replay(js, stream, f"ev.pool.{token}.*", until=mid_time))
    assert sorted(x.event.count for x in both) == [1, 2, 3, 4, 5, 101, 102, 103, 104, 105]

    after = await collect(replay(js, stream, f"ev.pool.{token}.*", since=mid_time))
    assert isinstance(after[0], Unreadable) and after[1].event.count == 6

    assert await collect(replay(js, stream, f"ev.pool.{token}nothing.*")) == []

"""Benchmark: event-store appends and projection replay, each beside raw nats-py in the same run.

    python -m bench.events [--events 100000] [--appends 20000] [--window 256]

Append: EventStore.append (envelope, encode, Nats-Msg-Id, expected-last-subject-sequence,
ack) with ``window`` appends in flight on distinct aggregates, vs raw ``js.publish_async``
of same-size payloads with the same window. Replay: a Projector folding N events from an
ordered consumer until caught up, vs a raw ordered consumer reading and msgspec-decoding
the same N messages. Goal: both ratios >= 0.5.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import msgspec
import nats

from bench._nats import nats_server
from libs.events import NEW, Aggregate, Metadata, Recorded, codec, streams, subjects
from libs.events.ids import new_id
from libs.events.pool import PrewarmRequested
from libs.events.projector import Projection, Projector
from libs.events.reader import subscribe_ordered
from libs.events.store import EventStore

STREAM = subjects.event_stream(subjects.POOL)


async def bench_append(js, count: int, window: int) -> tuple[float, float]:
    """Events/s for EventStore.append and for raw pipelined publish."""
    store = EventStore(js)
    token = "ba" + new_id().replace("-", "")[-10:]
    meta = Metadata(actor="bench", correlation_id=new_id())
    sem = asyncio.Semaphore(window)

    async def one(i: int) -> None:
        async with sem:
            await store.append(Aggregate(subjects.POOL, token, f"a{i}"), [PrewarmRequested(pool_id="p", count=i)],
                               NEW, meta)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    ours = count / (time.perf_counter() - t0)

    sample = codec.encode(store.envelope(Aggregate(subjects.POOL, token, "x"),
                                         PrewarmRequested(pool_id="p", count=1), 1, meta))
    raw_token = "br" + new_id().replace("-", "")[-10:]
    t0 = time.perf_counter()
    futures = []
    for i in range(count):
        futures.append(await js.publish_async(f"ev.pool.{raw_token}.a{i}", sample, wait_stall=30))
        if len(futures) >= window:
            await asyncio.gather(*futures)
            futures.clear()
    await asyncio.gather(*futures)
    raw = count / (time.perf_counter() - t0)
    return ours, raw


async def fill(js, token: str, count: int) -> None:
    """Write ``count`` valid events on 100 aggregates (raw, fast)."""
    store = EventStore(js)
    meta = Metadata(actor="bench")
    pending = []
    for i in range(count):
        agg = Aggregate(subjects.POOL, token, f"a{i % 100}")
        env = store.envelope(agg, PrewarmRequested(pool_id="p", count=i), i // 100 + 1, meta)
        pending.append(await js.publish_async(subjects.aggregate_subject(agg), codec.encode(env), wait_stall=30))
        if len(pending) >= 1000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)


class Count(msgspec.Struct, frozen=True):
    events: int = 0
    total: int = 0


def count(view: Count, rec: Recorded) -> Count:
    return Count(view.events + 1, view.total + rec.event.count)


async def bench_replay(js, n: int) -> tuple[float, float]:
    """Events/s for a projector's replay and for a raw ordered consumer read + decode."""
    token = "bp" + new_id().replace("-", "")[-10:]
    await fill(js, token, n)
    filter_subject = f"ev.pool.{token}.*"

    sub = await subscribe_ordered(js, STREAM, filter_subject)
    decoder = msgspec.json.Decoder()
    t0 = time.perf_counter()
    seen = 0
    async for msg in sub.messages:
        decoder.decode(msg.data)
        seen += 1
        if seen == n:
            break
    raw = n / (time.perf_counter() - t0)
    await sub.unsubscribe()

    projector = Projector(js, Projection("bench", STREAM, filter_subject, Count(), count, Count))
    t0 = time.perf_counter()
    await projector.start()
    await projector.wait_caught_up(600)
    ours = n / (time.perf_counter() - t0)
    await projector.stop(checkpoint=False)
    assert projector.view.events == n, projector.view
    return ours, raw


async def main(args: argparse.Namespace) -> None:
    with nats_server() as url:
        nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
        js = nc.jetstream(publish_async_max_pending=args.window * 4)
        await streams.ensure_streams(js)
        ours, raw = await bench_append(js, args.appends, args.window)
        print(f"append  : {ours:10,.0f} events/s   raw js.publish_async: {raw:10,.0f} msgs/s   "
              f"ratio {ours / raw:.2f} (goal >= 0.50)")
        ours, raw = await bench_replay(js, args.events)
        print(f"replay  : {ours:10,.0f} events/s   raw ordered read+decode: {raw:10,.0f} msgs/s   "
              f"ratio {ours / raw:.2f} (goal >= 0.50)   [{args.events:,} events]")
        await nc.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--appends", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=256)
    asyncio.run(main(parser.parse_args()))

"""Benchmark: claim latency on a warm pool, beside a raw NATS request/reply round trip.

    python -m bench.pool [--claims 1000] [--clients 50] [--pool 50]

Each client loops: claim (``cmd.pool.claim``, a checked JetStream append) then release.
Latency is the claim request's round trip as a client sees it. The raw baseline is the same
client loop against a bare NATS responder that echoes, in the same run. Goal: p99 claim <= 5x raw.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import msgspec
import nats

from bench._nats import nats_server
from libs.events import streams, subjects
from libs.events.ids import new_id
from services.pool import api
from services.pool.app import PoolService, ServiceConfig
from services.pool.providers.vastai import VastAIProvider
from services.pool.sim.config import SimConfig
from services.pool.sim.server import start_sim


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) in milliseconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))] * 1000


async def drive(nc, subject: str, total: int, clients: int, release: bool,
                release_subject: str = "") -> tuple[list[float], int]:
    """Run ``clients`` concurrent loops until ``total`` requests; return latencies and refusals."""
    latencies: list[float] = []
    refused = 0
    counter = iter(range(total))

    async def client(n: int) -> None:
        nonlocal refused
        for i in counter:
            body = msgspec.json.encode({"holder": f"bench-{n}-{i}", "lease_s": 60})
            t0 = time.perf_counter()
            reply = await nc.request(subject, body, timeout=10)
            latencies.append(time.perf_counter() - t0)
            data = msgspec.json.decode(reply.data)
            if not release:
                continue
            if not data.get("ok"):
                refused += 1
                continue
            claim = data["result"]
            await nc.request(release_subject, msgspec.json.encode(
                {"instance_id": claim["instance_id"], "lease_id": claim["lease_id"]}), timeout=10)

    await asyncio.gather(*(client(n) for n in range(clients)))
    return latencies, refused


async def durable_writes(js, total: int, clients: int) -> list[float]:
    """Latency of bare JetStream publishes (sync_interval: always) at the same concurrency."""
    latencies: list[float] = []
    counter = iter(range(total))
    # A stream of its own with the event streams' storage settings: raw bytes on the pool's event
    # stream would be quarantined by the pool's projector and slow the claims measured after.
    config = streams.event_stream_config(subjects.POOL)
    config.name, config.subjects = "BENCH_RAW", ["benchraw.>"]
    await js.add_stream(config)

    async def client(n: int) -> None:
        for i in counter:
            t0 = time.perf_counter()
            await js.publish(f"benchraw.c{n}", b'{"n":%d}' % i)
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(client(n) for n in range(clients)))
    return latencies


async def main(args: argparse.Namespace) -> None:
    sim = await start_sim(SimConfig(offer_count=args.pool * 3, schedule_delay=0.1, pull_seconds=0.2,
                                    extract_seconds=0.1, comfy_boot_delay=0.2, tick_seconds=0.1))
    with nats_server() as url:
        nc = await nats.connect(url)
        provider = VastAIProvider("sim-key", sim.url)
        service = PoolService(nc, nc.jetstream(), provider, config=ServiceConfig(
            pool_id="bench" + new_id()[-8:], reconcile_interval_s=0.5, listing_grace_s=5, rent_grace_s=10))
        await service.start()
        await service.commands.configure(api.ConfigureRequest(changes={
            "desired_size": args.pool, "max_size": args.pool, "offer_filter": {"gpu_names": [], "max_dph": 100.0, "min_disk_gb": 0, "min_reliability": 0, "verified_only": False, "min_direct_ports": 0},
            "readiness": {"probe_initial_backoff_s": 0.2, "probe_max_backoff_s": 1.0}}))
        t0 = time.time()
        while sum(i.phase == "ready" for i in service.view.instances.values()) < args.pool:
            if time.time() - t0 > 60:
                import collections
                raise SystemExit(f"the warm pool did not fill in 60 s: "
                                 f"{collections.Counter(i.phase for i in service.view.instances.values())} "
                                 f"{service.reconciler.last_error}")
            await asyncio.sleep(0.2)

        async def echo(msg) -> None:
            await msg.respond(msg.data)

        await nc.subscribe("bench.echo", cb=echo)
        raw, _ = await drive(nc, "bench.echo", args.claims, args.clients, release=False)
        js_raw = await durable_writes(nc.jetstream(), args.claims * 2, args.clients)
        pool_id = service.config.pool_id
        claims, refused = await drive(nc, api.for_pool(api.CLAIM, pool_id), args.claims, args.clients, release=True,
                                      release_subject=api.for_pool(api.RELEASE, pool_id))
        print(f"claim   : p50 {pct(claims, 50):7.2f} ms  p99 {pct(claims, 99):7.2f} ms  "
              f"(mean {statistics.mean(claims) * 1000:.2f} ms, {refused} refused of {len(claims)})")
        print(f"raw rtt : p50 {pct(raw, 50):7.2f} ms  p99 {pct(raw, 99):7.2f} ms  (bare NATS request/reply)")
        print(f"raw js  : p50 {pct(js_raw, 50):7.2f} ms  p99 {pct(js_raw, 99):7.2f} ms  "
              f"(bare js.publish, same concurrency: the fsync-bound floor of any durable write)")
        print(f"ratio   : p99 claim / p99 raw = {pct(claims, 99) / pct(raw, 99):.1f}x (goal <= 5x); "
              f"{args.clients} clients, {args.claims} claims, pool of {args.pool}")
        await service.commands.safe_mode(api.SafeModeRequest(enabled=True))
        await asyncio.sleep(1.5)
        await service.stop()
        await provider.aclose()
        await nc.close()
    await sim.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--claims", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--pool", type=int, default=50)
    asyncio.run(main(parser.parse_args()))

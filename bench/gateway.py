"""Benchmark: GET /api/v1/pool through the whole gateway, beside a bare aiohttp handler, in the same run.

    python -m bench.gateway [--clients 50] [--seconds 6] [--rounds 3] [--instances 8]

Each server runs in its own process (``python -m services.gateway`` with real NATS and
PostgreSQL, embedded unless NATS_URL / DATABASE_URL are set; the bare one serves the same
JSON bytes from one handler). One load process drives ``--clients`` concurrent keep-alive
clients at each, in alternating rounds, and reports requests/s and latency percentiles. The gateway's
answer is computed per request: auth (admin key), rate-limit check (limits off here),
security headers, metrics, the pool summary from the projection, JSON encoding.
Goal: gateway requests/s >= 0.5 x bare.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import nats
from aiohttp import ClientSession, TCPConnector, web

from bench._nats import nats_server
from libs.events import NEW, Aggregate, Metadata, streams, subjects
from libs.events import pool as ev
from libs.events.base import Event
from libs.events.store import EventStore, utc_now

ADMIN_KEY = "bench-admin-key-0b9c7d2e4f6a8c1e3d5f"
PATH = "/api/v1/pool"


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) in milliseconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))] * 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL URL: the one in DATABASE_URL, or a throwaway embedded one."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    from libs.stack.postgres import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="stoker-bench-pg-") as tmp, \
            EmbeddedPostgres(Path(tmp) / "pgdata", ready_timeout=60) as server:
        yield server.url


async def seed(nats_url: str, pool_id: str, instances: int) -> None:
    """A configured pool with ready (and a few claimed) instances, as the pool service would record them."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await streams.ensure_streams(js)
        store = EventStore(js)
        meta = Metadata(actor="pool")
        await store.append(Aggregate(subjects.POOL, ev.CONFIG, pool_id),
                           [ev.PoolConfigured(pool_id=pool_id, config=ev.PoolConfig(desired_size=instances,
                                                                                    max_size=instances))], NEW, meta)
        for n in range(instances):
            offer = ev.Offer(offer_id=f"o{n}", gpu_name="RTX 4090", dph=0.4 + n / 100, host_id=f"h{n}",
                             machine_id=f"m{n}")
            events: list[Event] = [
                ev.RentRequested(pool_id=pool_id, idempotency_key=f"k{n}", offer=offer, provider="sim",
                                 label=f"stoker:{pool_id}"),
                ev.InstanceRented(pool_id=pool_id, provider="sim", provider_id=str(1000 + n), offer=offer,
                                  dph=offer.dph, label=f"stoker:{pool_id}"),
                ev.Ready(pool_id=pool_id, base_url=f"http://10.0.0.{n}:8188", models=("sdxl.safetensors",)),
            ]
            if n % 3 == 0:
                events.append(ev.Claimed(pool_id=pool_id, lease_id=f"l{n}", holder=f"job-{n}",
                                         expires_at=utc_now() + timedelta(hours=1)))
            await store.append(Aggregate(subjects.POOL, ev.INSTANCE, f"i{n}-{pool_id}"), events, NEW, meta)
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def child(argv: list[str], env: dict[str, str], port: int, log: Path) -> AsyncIterator[None]:
    """Run a server process (output to ``log``) until the block ends (SIGTERM, then wait)."""
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=out, stderr=out)
    try:
        async with asyncio.timeout(60):
            while True:
                if proc.returncode is not None:
                    raise RuntimeError(f"{argv} exited early:\n{log.read_text()[-2000:]}")
                with contextlib.suppress(OSError):
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                await asyncio.sleep(0.1)
        yield
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def load(url: str, headers: dict[str, str], clients: int, seconds: float) -> tuple[float, list[float], int]:
    """Requests/s, latencies and non-200 count for ``clients`` concurrent loops over ``seconds`` (after warm-up)."""
    latencies: list[float] = []
    errors = 0
    async with ClientSession(connector=TCPConnector(limit=clients)) as session:
        async def one() -> None:
            nonlocal errors
            t0 = time.perf_counter()
            async with session.get(url, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1
            latencies.append(time.perf_counter() - t0)

        async def loop(until: float) -> None:
            while time.perf_counter() < until:
                await one()

        warm = time.perf_counter() + 0.5
        await asyncio.gather(*(loop(warm) for _ in range(clients)))
        latencies.clear()
        errors = 0
        start = time.perf_counter()
        await asyncio.gather(*(loop(start + seconds) for _ in range(clients)))
        elapsed = time.perf_counter() - start
    return len(latencies) / elapsed, latencies, errors


def serve_bare(port: int, body_file: str) -> None:
    """The baseline: one aiohttp handler answering the same bytes, nothing else."""
    body = Path(body_file).read_bytes()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get(PATH, handler)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def main(args: argparse.Namespace) -> None:
    pool_id = "bench" + os.urandom(4).hex()
    with nats_server() as nats_url, postgres_server() as database_url, \
            tempfile.TemporaryDirectory(prefix="stoker-bench-") as tmp:
        print("servers up; seeding", file=sys.stderr, flush=True)
        await seed(nats_url, pool_id, args.instances)
        env = {**os.environ, "NATS_URL": nats_url, "DATABASE_URL": database_url, "STOKER_ADMIN_KEY": ADMIN_KEY,
               "STOKER_POOL_ID": pool_id, "STOKER_RATE_LIMIT_API": "off", "PYTHONUNBUFFERED": "1",
               "STOKER_GATEWAY_HOST": "127.0.0.1"}
        headers = {"X-Admin-Api-Key": ADMIN_KEY}
        gw_port, bare_port = free_port(), free_port()
        env["STOKER_GATEWAY_PORT"] = str(gw_port)
        body_file = Path(tmp) / "pool.json"
        print("seeded; starting the gateway", file=sys.stderr, flush=True)
        async with child([sys.executable, "-m", "services.gateway"], env, gw_port, Path(tmp) / "gateway.log"):
            async with ClientSession() as session, session.get(f"http://127.0.0.1:{gw_port}{PATH}",
                                                               headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                body = await resp.read()
            body_file.write_bytes(body)
            async with child([sys.executable, "-m", "bench.gateway", "--serve-bare", str(bare_port), str(body_file)],
                             env, bare_port, Path(tmp) / "bare.log"):
                # Alternate short rounds, so both sides see the same background load on a shared machine.
                results: dict[str, list[tuple[float, list[float], int]]] = {"gateway": [], "bare aiohttp": []}
                for _ in range(args.rounds):
                    for name, port in (("gateway", gw_port), ("bare aiohttp", bare_port)):
                        results[name].append(await load(f"http://127.0.0.1:{port}{PATH}", headers, args.clients,
                                                        args.seconds / args.rounds))
    print(f"GET {PATH}: {args.instances} instances, {len(body)} bytes, {args.clients} concurrent clients, "
          f"{args.rounds} alternating rounds, {args.seconds:.0f} s per server, {os.cpu_count()} cores")
    rates = {}
    for name, rounds in results.items():
        rates[name] = sum(r[0] for r in rounds) / len(rounds)
        latencies = [x for r in rounds for x in r[1]]
        errors = sum(r[2] for r in rounds)
        per_round = " ".join(f"{r[0]:.0f}" for r in rounds)
        print(f"  {name:13s} {rates[name]:8.0f} req/s   p50 {pct(latencies, 50):6.2f} ms   "
              f"p99 {pct(latencies, 99):6.2f} ms   non-200: {errors}   (rounds: {per_round})")
    ratio = rates["gateway"] / rates["bare aiohttp"] if rates["bare aiohttp"] else 0.0
    print(f"  ratio gateway/bare: {ratio:.2f} (goal >= 0.5) {'OK' if ratio >= 0.5 else 'BELOW GOAL'}")


def cli() -> None:
    """Entry point."""
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-bare":
        serve_bare(int(sys.argv[2]), sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per server, over all rounds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--instances", type=int, default=8)
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()

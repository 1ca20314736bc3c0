"""The reconciler lease is kept locally for its TTL while NATS is away, never longer."""

from __future__ import annotations

import asyncio

import nats.errors

from services.pool.leader import LeaderLease


class FakeKV:
    """A key-value bucket that can go away."""

    def __init__(self) -> None:
        self.revision = 0
        self.down = False

    async def create(self, key: str, value: bytes) -> int:
        return await self.update(key, value, last=0)

    async def update(self, key: str, value: bytes, last: int) -> int:
        if self.down:
            raise nats.errors.TimeoutError
        self.revision += 1
        return self.revision


class FakeJS:
    def __init__(self, kv: FakeKV) -> None:
        self.kv = kv

    async def key_value(self, bucket: str) -> FakeKV:
        return self.kv


def test_the_leader_keeps_the_lease_for_its_ttl_while_nats_is_away() -> None:
    async def scenario() -> None:
        now = [100.0]
        kv = FakeKV()
        lease = LeaderLease(FakeJS(kv), "k", "r0", ttl=5.0, clock=lambda: now[0])  # type: ignore[arg-type]
        assert await lease.tick() and lease.is_leader
        kv.down = True
        now[0] = 103.0
        assert await lease.tick(), "3 s after the last refresh nobody else can hold it"
        now[0] = 105.5
        assert not lease.is_leader, "the TTL has passed: another replica may have it"
        assert not await lease.tick()
        kv.down = False
        assert await lease.tick() and lease.is_leader

    asyncio.run(asyncio.wait_for(scenario(), 5))

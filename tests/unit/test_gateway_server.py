"""The connection cap (pure parts): which connection makes room for a new one."""

from __future__ import annotations

from typing import Any

from services.gateway.server import ConnectionGuard


class FakeConnection:
    def __init__(self) -> None:
        self.transport: Any = object()

    def force_close(self) -> None:
        self.transport = None


def test_the_oldest_idle_connection_makes_room() -> None:
    guard = ConnectionGuard(3)
    conns = [FakeConnection() for _ in range(3)]
    guard.busy[conns[0]] = 1  # the oldest is in the middle of a request: kept
    new = FakeConnection()
    guard.admit(new, [*conns, new])  # type: ignore[list-item]
    assert conns[0].transport is not None and conns[1].transport is None and new.transport is not None
    assert guard.evicted == 1
    newer = FakeConnection()
    guard.admit(newer, [*conns, new, newer])  # type: ignore[list-item]  # closed ones no longer count
    assert conns[2].transport is None and guard.evicted == 2


def test_under_the_cap_nothing_is_closed_and_when_all_are_busy_the_new_one_is() -> None:
    guard = ConnectionGuard(2)
    a, b = FakeConnection(), FakeConnection()
    guard.admit(b, [a, b])  # type: ignore[list-item]
    assert a.transport is not None and b.transport is not None
    guard.busy.update({a: 1, b: 1})
    c = FakeConnection()
    guard.admit(c, [a, b, c])  # type: ignore[list-item]
    assert c.transport is None and guard.refused == 1 and a.transport is not None

"""Quiet logs (issue 12 item 17): a NATS outage is a few lines, not a traceback per reconnect; errors name
themselves."""

import asyncio
import logging
from types import SimpleNamespace

import pytest

from libs.observability.logs import describe, throttled_errors
from libs.stack.nats import EmbeddedNats
from services.audit import app as audit_app
from services.pool.app import connect_nats

pytestmark = pytest.mark.timeout(40)


async def test_a_nats_outage_logs_one_line_per_period_without_tracebacks(tmp_path, caplog) -> None:
    server = EmbeddedNats(tmp_path / "nats")
    await server.start()
    nc = await connect_nats(server.url, reconnect_time_wait=0.1, connect_timeout=0.5)
    try:
        with caplog.at_level(logging.DEBUG):
            await server.stop()
            await asyncio.sleep(3.0)  # ~20 reconnect attempts
        mine = [r for r in caplog.records if r.name.startswith(("stoker", "nats", "services"))]
        assert all(r.exc_info is None for r in mine), [r.getMessage() for r in mine if r.exc_info]
        outage = [r for r in mine if r.levelno >= logging.WARNING]
        assert 1 <= len(outage) <= 2, [r.getMessage() for r in outage]
        assert "NATS at" in outage[0].getMessage()
    finally:
        await nc.close()


async def test_throttled_errors_count_what_they_held_back(caplog) -> None:
    now = [0.0]
    report = throttled_errors(logging.getLogger("stoker.test"), "NATS", every_s=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="stoker.test"):
        for t in (0, 1, 2, 11):
            now[0] = t
            await report(ConnectionRefusedError("refused"))
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["NATS: ConnectionRefusedError: refused", "NATS: ConnectionRefusedError: refused (2 more since "
                     "the last report)"]


def test_an_exception_without_a_message_is_named() -> None:
    assert describe(TimeoutError()) == "TimeoutError"
    assert describe(OSError("disk on fire")) == "OSError: disk on fire"


async def test_audit_database_unavailable_names_the_error(monkeypatch, caplog) -> None:
    calls = []

    async def connect(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise TimeoutError()  # what asyncpg raises when the server does not answer: no message
        raise RuntimeError("stop the test")

    monkeypatch.setattr(audit_app.asyncpg, "connect", connect)
    service = audit_app.AuditService.__new__(audit_app.AuditService)
    service.config = SimpleNamespace(database_url="postgresql://nowhere/db")
    with caplog.at_level(logging.WARNING, logger="stoker.audit"), pytest.raises(RuntimeError):
        await service._open_database()
    [line] = [r.getMessage() for r in caplog.records if "audit database unavailable" in r.getMessage()]
    assert "(TimeoutError)" in line and "()" not in line

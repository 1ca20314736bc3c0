"""Chain building and verification, pure: every kind of tampering is named at the right sequence."""

from datetime import datetime, timedelta, timezone

import pytest

from libs.events import codec
from libs.events.envelope import Aggregate, Metadata
from libs.events.pool import PrewarmRequested
from libs.events.store import EventStore
from services.audit.chain import Keyring, canonical, record_hash, to_us
from services.audit.domain import (
    GENESIS,
    Message,
    advance,
    anchor_due,
    build,
    describe,
    fresh,
)
from services.audit.verify import ChainVerifier, Checkpoint, StreamExtent

T0 = datetime(2026, 1, 2, tzinfo=timezone.utc)
KR = Keyring.from_strings("test-audit-key")
S = "EVENTS_POOL"


def messages(n: int, start: int = 1) -> list[Message]:
    store = EventStore(None, clock=lambda: T0)  # type: ignore[arg-type]
    out = []
    for seq in range(start, start + n):
        env = store.envelope(Aggregate("pool", "config", f"p{seq % 3}"), PrewarmRequested(pool_id="p", count=seq),
                             seq, Metadata(actor="pool"))
        out.append(Message(S, f"ev.pool.config.p{seq % 3}", seq, T0, codec.encode(env)))
    return out


def as_verify_row(row: tuple) -> list:
    """What the repository selects: times as microseconds."""
    r = list(row)
    r[10], r[11] = to_us(r[10]), to_us(r[11])
    return r


def chain(n: int = 20, keyring: Keyring = KR) -> list[list]:
    rows, _ = build(GENESIS, [describe(m) for m in messages(n)], keyring, T0)
    return [as_verify_row(r) for r in rows]


def rehash(rows: list[list], start: int) -> None:
    """What an attacker without the key can do: recompute hashes and links from ``start`` on."""
    prev = rows[start - 1][15] if start > 0 else bytes(32)
    for r in rows[start:]:
        r[14] = prev
        r[15] = record_hash(canonical(*r[:12], r[13], r[14], r[12]))
        prev = r[15]


def verify(rows: list[list], n_stream: int | None = None, checkpoints=(), head: int | None = None,
           keyring: Keyring = KR, chunk: int = 7):
    last = n_stream if n_stream is not None else 20
    v = ChainVerifier(chain="main", keyring=keyring, checkpoints=checkpoints, streams={S: StreamExtent(1, last)},
                      cursors={S: last}, head_seq=len(rows) if head is None else head)
    for i in range(0, len(rows), chunk):
        v.feed(rows[i:i + chunk])
    return v.finish()


def test_an_untouched_chain_verifies() -> None:
    report = verify(chain())
    assert report.ok and report.records == 20 and (report.first_seq, report.last_seq) == (1, 20)
    assert report.lag == {S: 0}


def test_chain_continues_across_batches() -> None:
    facts = [describe(m) for m in messages(10)]
    rows1, head = build(GENESIS, facts[:4], KR, T0)
    rows2, _ = build(head, facts[4:], KR, T0 - timedelta(hours=1))  # clock stepped back
    rows = [as_verify_row(r) for r in rows1 + rows2]
    assert verify(rows, 10).ok
    assert rows[5][11] == rows[3][11]  # recorded-at never goes backwards


def test_altered_payload() -> None:
    rows = chain()
    rows[6][12] = rows[6][12].replace('"count":7', '"count":700')
    first = verify(rows).first
    assert (first.kind, first.seq) == ("altered", 7)


def test_deleted_row() -> None:
    rows = chain()
    del rows[9]
    first = verify(rows).first
    assert (first.kind, first.seq) == ("deleted", 10)


def test_swapped_rows() -> None:
    rows = chain()
    rows[4], rows[11] = rows[11], rows[4]
    rows[4][0], rows[11][0] = 5, 12
    first = verify(rows).first
    assert (first.kind, first.seq) == ("reordered", 5)


def test_forged_row_appended() -> None:
    rows = chain()
    forged = list(rows[-1])
    forged[0], forged[1], forged[3] = 21, "forged-event", 21
    forged[14] = rows[-1][15]
    forged[15] = record_hash(canonical(*forged[:12], forged[13], forged[14], forged[12]))
    rows.append(forged)
    first = verify(rows).first
    assert (first.kind, first.seq) == ("inserted", 21)


def test_truncated_tail_named_by_head() -> None:
    rows = chain()
    report = verify(rows[:15], head=20)
    assert (report.first.kind, report.first.seq) == ("truncated", 16)


def test_truncated_tail_named_by_stream_cursor() -> None:
    report = verify(chain()[:15], head=15)
    assert (report.first.kind, report.first.seq) == ("truncated", 16)
    assert "EVENTS_POOL seq 16" in report.first.reason


def test_truncated_tail_named_by_anchor() -> None:
    rows = chain()
    a = rows[17]
    from services.audit.chain import sign_checkpoint
    sig = sign_checkpoint(KR, "anchor", "main", 18, a[15].hex(), a[16].hex(), {S: 18})
    anchor = Checkpoint("anchor", 18, a[15], a[16], KR.current_id, {S: 18}, "", sig, "nats")
    v = ChainVerifier(chain="main", keyring=KR, checkpoints=[anchor], streams={S: StreamExtent(1, 20)},
                      cursors={S: 12}, head_seq=12)
    v.feed(rows[:12])
    report = v.finish()
    assert (report.first.kind, report.first.seq) == ("truncated", 13)


def test_rewritten_chain_without_the_key() -> None:
    rows = chain()
    rows[3][12] = rows[3][12].replace('"count":4', '"count":400')
    rehash(rows, 3)
    first = verify(rows).first
    assert (first.kind, first.seq) == ("altered", 4)
    assert "HMAC" in first.reason


def test_deleted_and_renumbered_rows() -> None:
    rows = chain()
    del rows[5]
    for r in rows[5:]:
        r[0] -= 1
    first = verify(rows, head=19).first
    assert (first.kind, first.seq) == ("deleted", 6)


def test_old_keys_verify_and_unknown_keys_are_named() -> None:
    old = Keyring.from_strings("old-key")
    facts = [describe(m) for m in messages(6)]
    rows1, head = build(GENESIS, facts[:3], old, T0)
    rows2, _ = build(head, facts[3:], KR, T0)
    rows = [as_verify_row(r) for r in rows1 + rows2]
    both = Keyring.from_strings("test-audit-key", ["old-key"])
    assert verify(rows, 6, keyring=both).ok
    first = verify(rows, 6, keyring=KR).first
    assert (first.kind, first.seq) == ("unknown_key", 1)


def test_missing_event_in_the_middle_of_a_valid_chain() -> None:
    facts = [describe(m) for m in messages(10)]
    rows, _ = build(GENESIS, facts[:4] + facts[5:], KR, T0)  # the writer skipped stream seq 5
    first = verify([as_verify_row(r) for r in rows], 10, head=9).first
    assert (first.kind, first.seq) == ("missing", 5)


def test_pruned_prefix_verifies_from_its_checkpoint() -> None:
    from services.audit.anchor import pruned_checkpoint
    rows = chain()
    last = rows[7]
    cp = pruned_checkpoint(KR, "main", 8, last[15], last[16], {S: 8}, T0, 8)
    report = verify(rows[8:], checkpoints=[cp])
    assert report.ok and report.first_seq == 9
    assert verify(rows[8:]).first.kind == "deleted"  # without the checkpoint
    forged = cp._replace(signature="00" * 32)
    report = verify(rows[8:], checkpoints=[forged])
    assert not report.ok and {p.kind for p in report.problems} >= {"inserted"}


def test_lag_is_reported_not_failed() -> None:
    v = ChainVerifier(chain="main", keyring=KR, streams={S: StreamExtent(1, 25)}, cursors={S: 20}, head_seq=20)
    v.feed(chain())
    report = v.finish()
    assert report.ok and report.lag == {S: 5}


def test_stream_gaps_and_order_helpers() -> None:
    ms = messages(6)
    assert [m.seq for m in fresh(2, ms[::-1] + ms[:3])] == [3, 4, 5, 6]
    assert advance({S: 1}, [describe(m) for m in ms[:3]]) == {S: 3}


@pytest.mark.parametrize("count,seconds,due", [(0, 100.0, False), (5, 1.0, False), (5, 10.0, True), (1000, 0.0, True)])
def test_anchor_policy(count: int, seconds: float, due: bool) -> None:
    assert anchor_due(count, seconds, every=1000, interval=10.0) is due


def segments(rows: list[list], cuts: list[int], n_stream: int = 20):
    """Verify ``rows`` as consecutive segments split before the given sequences, then merge."""
    from services.audit.verify import merge_segments
    streams = {S: StreamExtent(1, n_stream)}
    bounds = [rows[0][0], *cuts, rows[-1][0] + 1]
    parts = []
    for i in range(len(bounds) - 1):
        start, end = bounds[i], bounds[i + 1] - 1
        mine = [r for r in rows if r[0] >= start]
        if i == 0:
            v = ChainVerifier(chain="main", keyring=KR, streams=streams, end=end)
        else:
            prev = next((r[15] for r in rows if r[0] == start - 1), b"")
            v = ChainVerifier(chain="main", keyring=KR, streams=streams, start=(start, prev), end=end)
        v.feed(mine)
        parts.append(v.summary())
    final = ChainVerifier(chain="main", keyring=KR, streams=streams, cursors={S: n_stream}, head_seq=rows[-1][0])
    final.resume(merge_segments(parts, streams))
    return final.finish()


def test_segments_merge_to_the_same_verdict() -> None:
    assert segments(chain(), [7, 14]).ok
    rows = chain()
    rows[15][12] = rows[15][12].replace('"count":16', '"count":1600')
    first = segments(rows, [7, 14]).first
    assert (first.kind, first.seq) == ("altered", 16)
    rows = chain()
    del rows[6]  # seq 7, the first of the second segment
    first = segments(rows, [7, 14], ).first
    assert (first.kind, first.seq) == ("deleted", 7)
    rows = chain()
    rows[3], rows[10] = rows[10], rows[3]  # across a segment boundary
    rows[3][0], rows[10][0] = 4, 11
    first = segments(rows, [7, 14]).first
    assert (first.kind, first.seq) == ("reordered", 4)


def test_segments_check_stream_continuity_at_the_joins() -> None:
    facts = [describe(m) for m in messages(20)]
    rows, _ = build(GENESIS, facts[:9] + facts[10:], KR, T0)  # stream seq 10 never recorded: at a join
    rows = [as_verify_row(r) for r in rows]
    first = segments(rows, [10], n_stream=20).first
    assert (first.kind, first.seq) == ("missing", 10)
    assert "EVENTS_POOL seq 10" in first.reason

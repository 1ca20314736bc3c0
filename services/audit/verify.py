"""Chain verification, pure: rows in sequence order, checkpoints and stream extents in; a report out.

Rows are fed in chunks (``feed``), then ``finish`` returns the report. Each row is checked for
its place (gap-free sequence), its hash, its link to the previous record, its HMAC, its
checkpoints (anchors published on JetStream, prune and origin checkpoints) and its stream
position (every stream message up to the applied cursor has exactly one record, in order).
The first bad record is named with why: ``altered``, ``deleted``, ``inserted``,
``reordered``, ``truncated``, ``missing`` (never recorded) or ``unknown_key``.
"""

from __future__ import annotations

import hashlib
import hmac as _hmac
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from libs.events import codec
from services.audit.chain import (
    VERSION,
    ZERO_HASH,
    Keyring,
    UnknownKey,
    canonical,
    checkpoint_valid,
)

ALTERED, DELETED, INSERTED, REORDERED = "altered", "deleted", "inserted", "reordered"
TRUNCATED, MISSING, UNKNOWN_KEY = "truncated", "missing", "unknown_key"
ANCHOR, PRUNE, ORIGIN = "anchor", "prune", "origin"

# Verify rows: ROW_COLUMNS with occurred_at / recorded_at as integer microseconds.
SEQ, EVENT_ID, STREAM, STREAM_SEQ, KIND = 0, 1, 2, 3, 5
PAYLOAD, KEY_ID, PREV_HASH, HASH, HMAC = 12, 13, 14, 15, 16
_sha256 = hashlib.sha256


class Checkpoint(NamedTuple):
    """A signed statement about the chain: an anchor, a prune checkpoint or the chain's origin."""

    kind: str
    seq: int
    hash: bytes
    hmac: bytes
    key_id: str
    cursors: Mapping[str, int]
    extra: str
    signature: str
    source: str = "db"


class StreamExtent(NamedTuple):
    """Which sequences a stream holds now: ``first..last`` minus ``deleted``."""

    first: int
    last: int
    deleted: frozenset[int] = frozenset()

    def next_existing(self, seq: int) -> int:
        """The first sequence >= seq the stream holds (or last + 1)."""
        seq = max(seq, self.first)
        while seq in self.deleted:
            seq += 1
        return seq

    def held(self, after: int, through: int) -> int:
        """How many messages the stream holds in (after, through]."""
        lo, hi = max(after + 1, self.first), min(through, self.last)
        if hi < lo:
            return 0
        return hi - lo + 1 - sum(1 for d in self.deleted if lo <= d <= hi)


class Problem(NamedTuple):
    """What is wrong, at which audit sequence, and why."""

    kind: str
    seq: int
    reason: str


class Report(NamedTuple):
    """The outcome: ``first`` is the earliest problem (None when everything verifies)."""

    ok: bool
    first: Problem | None
    problems: list[Problem]
    records: int
    first_seq: int
    last_seq: int
    checkpoints: int
    lag: dict[str, int]

    def to_builtins(self) -> dict[str, Any]:
        """JSON-ready form, for the CLI and the API."""
        return {"ok": self.ok, "first": None if self.first is None else self.first._asdict(),
                "problems": [p._asdict() for p in self.problems], "records": self.records,
                "first_seq": self.first_seq, "last_seq": self.last_seq, "checkpoints": self.checkpoints,
                "lag": self.lag}


class ChainVerifier:
    """Feed rows in sequence order, then ``finish()``; stops early at the first chain problem."""

    def __init__(self, *, chain: str, keyring: Keyring, checkpoints: Iterable[Checkpoint] = (),
                 streams: Mapping[str, StreamExtent] | None = None, cursors: Mapping[str, int] | None = None,
                 head_seq: int = 0, event_ids: Mapping[str, Mapping[int, str]] | None = None,
                 lookahead: int = 1_000_000, start: tuple[int, bytes] | None = None, end: int | None = None,
                 validated: bool = False) -> None:
        """``start``/``end``: verify only the segment ``start[0]..end``, chaining from ``start[1]``, and
        learn each stream's position from its first record there (see ``merge_segments``).
        ``validated``: the checkpoints' signatures were checked already."""
        self.chain = chain
        self._keyring = keyring
        self._streams = streams
        self._cursors = dict(cursors or {})
        self._head_seq = head_seq
        self._event_ids = event_ids
        self._lookahead = lookahead
        self.problems: list[Problem] = []
        self.records = 0
        self.done = False
        self._checkpoints = list(checkpoints) if validated else self._valid_checkpoints(checkpoints)
        self._at: dict[int, list[Checkpoint]] = {}
        for cp in self._checkpoints:
            self._at.setdefault(cp.seq, []).append(cp)
        self._expected: int | None = None
        self._first_seq = 0
        self._prev = ZERO_HASH
        self._next: dict[str, int] = {}
        self._lasts = {name: ext.last for name, ext in (streams or {}).items()}
        # Streams with no deleted messages and no event ids to compare take the fast path.
        self._plain_streams: frozenset[str] | None = None if streams is None else frozenset(
            name for name, ext in streams.items() if not ext.deleted and event_ids is None)
        self._suspect: tuple[Any, str] | None = None  # (row, failed check) being classified
        self._seen_after_suspect = 0
        self._end = end
        self.stream_first: dict[str, tuple[int, int]] = {}  # segment mode: stream -> (stream seq, seq)
        if start is not None:
            self._expected, self._prev = start
            self._first_seq = start[0]

    # -- checkpoints -------------------------------------------------------------------------------

    @property
    def checkpoints(self) -> list[Checkpoint]:
        """The checkpoints whose signatures verified."""
        return list(self._checkpoints)

    def _valid_checkpoints(self, checkpoints: Iterable[Checkpoint]) -> list[Checkpoint]:
        valid = []
        for cp in checkpoints:
            try:
                good = checkpoint_valid(self._keyring, cp.kind, self.chain, cp.seq, cp.hash.hex(), cp.hmac.hex(),
                                        cp.key_id, cp.cursors, cp.extra, cp.signature)
            except UnknownKey:
                self.problems.append(Problem(UNKNOWN_KEY, cp.seq, f"{cp.kind} checkpoint ({cp.source}) is signed "
                                                                  f"with key id {cp.key_id}, not in the keyring"))
                continue
            if not good:
                self.problems.append(Problem(INSERTED, cp.seq, f"{cp.kind} checkpoint ({cp.source}) at seq "
                                                               f"{cp.seq} has a bad signature: forged"))
                continue
            valid.append(cp)
        return valid

    def _genesis(self, first_seq: int) -> bool:
        """Start the chain before ``first_seq``: at 0, or at a prune checkpoint right before it."""
        starts = [cp for cp in self._checkpoints if cp.kind in (PRUNE, ORIGIN) and cp.seq == first_seq - 1]
        origin = [cp for cp in self._checkpoints if cp.kind == ORIGIN]
        base: Mapping[str, int] = origin[0].cursors if origin else {}
        if first_seq == 1 or starts:
            if starts:
                start = max(starts, key=lambda cp: (cp.kind == PRUNE, len(cp.cursors)))
                self._prev = start.hash if first_seq > 1 else ZERO_HASH
                base = {**base, **start.cursors}
            self._expected = first_seq
            self._first_seq = first_seq
            self._init_streams(base)
            return True
        before = max([cp.seq for cp in self._checkpoints if cp.kind in (PRUNE, ORIGIN) and cp.seq < first_seq],
                     default=0)
        self._fail(DELETED, before + 1, f"the chain starts at seq {first_seq} but no prune checkpoint covers "
                                        f"records {before + 1}..{first_seq - 1}")
        return False

    def _init_streams(self, base: Mapping[str, int]) -> None:
        if self._streams is None:
            return
        for name, ext in self._streams.items():
            self._next[name] = ext.next_existing(base.get(name, 0) + 1)

    # -- rows ---------------------------------------------------------------------------------------

    def feed(self, rows: Iterable[Any]) -> None:
        """Check the next rows (sequence order). Rows: ROW_COLUMNS with times in microseconds."""
        if self.done:
            return
        it = iter(rows)
        while not self.done:
            if self._suspect is not None:
                for r in it:
                    self._classify_step(r)
                    if self.done:
                        return
                return
            if not self._feed_fast(it):
                return

    def _feed_fast(self, it: Any) -> bool:
        """The hot loop; returns True when it stopped early for the slow path, False when rows ran out.

        Exactly chain.canonical, inlined (as in domain.build): this runs once per record.
        """
        keyring_get, at, nexts, lasts = self._keyring.get, self._at, self._next, self._lasts
        plain, end = self._plain_streams, self._end
        encode, sha256, same = codec.encode, _sha256, _hmac.compare_digest
        prev, expected, count = self._prev, self._expected, 0
        try:
            for r in it:
                seq = r[0]
                if end is not None and seq > end:
                    self.done = True  # the segment is verified; what follows is another's
                    return True
                if expected is None:
                    if not self._genesis(seq):
                        return True
                    prev, expected = self._prev, self._expected
                if seq != expected:
                    assert expected is not None
                    self._fail(DELETED, expected, f"records {expected}..{seq - 1} are missing")
                    return True
                data = encode([VERSION, seq, r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11],
                               r[13], r[14].hex(), r[12]])
                digest = sha256(data).digest()
                if digest != r[15]:
                    self._suspect = (r, "hash")
                    return True
                if r[14] != prev:
                    self._suspect = (r, "link")
                    return True
                mac = keyring_get(r[13])
                if mac is None:
                    self._fail(UNKNOWN_KEY, seq, f"signed with key id {r[13]}, not in the keyring")
                    return True
                if not same(mac(data), r[16]):
                    self._hmac_failed(r)
                    return True
                if plain is not None:
                    name, sseq = r[2], r[3]
                    if sseq == nexts.get(name) and name in plain and sseq <= lasts[name]:
                        nexts[name] = sseq + 1  # the common case: the next message of a gap-free stream
                    elif not self._check_stream(r):
                        return True
                if seq in at and not self._check_at(r):
                    return True
                prev, expected = digest, seq + 1
                count += 1
            return False
        finally:
            self._prev, self._expected = prev, expected
            self.records += count

    def _check_stream(self, r: Any) -> bool:
        assert self._streams is not None
        name, sseq, seq = r[STREAM], r[STREAM_SEQ], r[SEQ]
        ext = self._streams.get(name)
        if ext is None:
            self._fail(INSERTED, seq, f"record of stream {name}, which is not audited")
            return False
        if name not in self._next:  # segment mode: the stream's position is checked when merging
            if sseq > ext.last or sseq in ext.deleted:
                self._fail(INSERTED, seq, f"{name} holds no message at seq {sseq}")
                return False
            self.stream_first[name] = (sseq, seq)
            self._next[name] = ext.next_existing(sseq + 1)
            return True
        nxt = self._next[name]
        if sseq < nxt:
            if sseq >= ext.first and sseq not in ext.deleted:
                self._fail(REORDERED, seq, f"{name} seq {sseq} is recorded after {name} seq {nxt - 1}")
                return False
        elif sseq > ext.last or sseq in ext.deleted:
            self._fail(INSERTED, seq, f"{name} holds no message at seq {sseq}")
            return False
        elif sseq > nxt:
            self._fail(MISSING, seq, f"{name} seq {nxt} has no record (the next recorded is {sseq})")
            return False
        if self._event_ids is not None and r[KIND] == "event":
            stored = self._event_ids.get(name, {}).get(sseq)
            if stored is not None and stored != r[EVENT_ID]:
                self._fail(ALTERED, seq, f"event id differs from {name} seq {sseq} ({stored})")
                return False
        self._next[name] = ext.next_existing(max(sseq, nxt - 1) + 1)
        return True

    def _check_at(self, r: Any) -> bool:
        for cp in self._at[r[SEQ]]:
            if cp.hash != r[HASH] or (cp.hmac and cp.hmac != r[HMAC]):
                self._fail(ALTERED, r[SEQ], f"differs from the {cp.kind} checkpoint ({cp.source}) at seq {cp.seq}")
                return False
        return True

    def _hmac_failed(self, r: Any) -> None:
        seq = r[SEQ]
        if not self._is_stream_message(r):
            self._fail(INSERTED, seq, "HMAC mismatch and no stream message matches it: a forged record")
        else:
            self._fail(ALTERED, seq, "HMAC mismatch although hash and link are consistent: the record was "
                                     "rewritten and the chain recomputed without the key")

    def _is_stream_message(self, r: Any) -> bool:
        """Whether a record points at a stream message no earlier record claims."""
        if self._streams is None:
            return True
        ext = self._streams.get(r[STREAM])
        sseq = r[STREAM_SEQ]
        if ext is None or sseq > ext.last or sseq in ext.deleted or sseq < self._next.get(r[STREAM], 0):
            return False
        if self._event_ids is not None and r[KIND] == "event":
            return self._event_ids.get(r[STREAM], {}).get(sseq) in (None, r[EVENT_ID])
        return True

    # -- classification of a hash or link failure ---------------------------------------------------

    def _classify_step(self, r: Any) -> None:
        assert self._suspect is not None
        if r[PREV_HASH] == self._prev:
            bad = self._suspect[0]
            self._fail(REORDERED, bad[SEQ], f"seq {bad[SEQ]} holds a record from elsewhere in the chain; the "
                                            f"record that belongs there is at seq {r[SEQ]}")
            return
        self._seen_after_suspect += 1
        if self._seen_after_suspect >= self._lookahead:
            self._conclude_suspect()

    def _conclude_suspect(self) -> None:
        assert self._suspect is not None
        r, check = self._suspect
        seq = r[SEQ]
        if check == "link":
            self._fail(DELETED, seq, f"its previous hash is not the hash of seq {seq - 1}: records before it "
                                     f"were removed or replaced")
            return
        for shift in (1, 2, 3, -1, -2, -3):
            data = canonical(seq + shift, r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11],
                             r[KEY_ID], r[PREV_HASH], r[PAYLOAD])
            if _sha256(data).digest() == r[HASH]:
                if shift > 0:
                    self._fail(DELETED, seq, f"it was written as seq {seq + shift}: {shift} record(s) before it "
                                             f"were deleted and the rest renumbered")
                else:
                    self._fail(INSERTED, seq, f"it was written as seq {seq + shift}: {-shift} record(s) were "
                                              f"inserted before it")
                return
        self._fail(ALTERED, seq, "content does not match its hash")

    def _fail(self, kind: str, seq: int, reason: str) -> None:
        self.problems.append(Problem(kind, seq, reason))
        self._suspect = None
        self.done = True

    # -- segments -----------------------------------------------------------------------------------

    def summary(self) -> Segment:
        """Where a segment ended (call after feeding it)."""
        if self._suspect is not None:
            self._conclude_suspect()
        return Segment(self._first_seq, list(self.problems), self.records, self._expected or self._first_seq,
                       self._prev, dict(self._next), dict(self.stream_first))

    def resume(self, merged: Merged) -> None:
        """Continue (for ``finish``) after segments verified elsewhere and merged."""
        self.problems += merged.problems
        self.records = merged.records
        self._expected, self._prev, self._next = merged.expected, merged.prev, dict(merged.nexts)
        self._first_seq = merged.first_seq
        self.done = bool(merged.problems)

    # -- the end --------------------------------------------------------------------------------------

    def finish(self) -> Report:
        """Conclude: tail checks (truncation, unrecorded events), lag, and the report."""
        if self._suspect is not None:
            self._conclude_suspect()
        if self._expected is None and not self.done and not self.records:
            starts = [cp.seq for cp in self._checkpoints if cp.kind in (PRUNE, ORIGIN)]
            self._genesis(max(starts, default=0) + 1)
        last = (self._expected or 1) - 1
        lag: dict[str, int] = {}
        if not self.done:
            self._tail_checks(last, lag)
        problems = sorted(self.problems, key=lambda p: p.seq)
        first = problems[0] if problems else None
        return Report(first is None, first, problems, self.records, self._first_seq, last,
                      len(self._checkpoints), lag)

    def _tail_checks(self, last: int, lag: dict[str, int]) -> None:
        beyond = [cp for cp in self._checkpoints if cp.seq > last]
        anchored = max((cp.seq for cp in beyond), default=0)
        if self._head_seq > last or anchored:
            top = max(self._head_seq, anchored)
            self._fail(TRUNCATED, last + 1, f"the chain ends at seq {last} but "
                                            + ("a checkpoint" if anchored >= self._head_seq else "the head")
                                            + f" names seq {top}")
            return
        if self._streams is None:
            return
        for name, ext in self._streams.items():
            applied = max([self._cursors.get(name, 0)]
                          + [cp.cursors.get(name, 0) for cp in self._checkpoints])
            nxt = self._next.get(name, ext.first)
            if ext.next_existing(nxt) <= min(applied, ext.last):
                missing = ext.held(nxt - 1, applied)
                self._fail(TRUNCATED, last + 1, f"{name} seq {ext.next_existing(nxt)} (and {missing - 1} more up "
                                                f"to the applied seq {applied}) has no record")
                return
            lag[name] = ext.held(max(applied, nxt - 1), ext.last)


class Segment(NamedTuple):
    """What a segment's verifier found and where it ended."""

    first_seq: int
    problems: list[Problem]
    records: int
    expected: int  # the next sequence after the segment
    prev: bytes  # the hash of its last record
    nexts: dict[str, int]  # per stream: the next sequence expected after the segment
    stream_first: dict[str, tuple[int, int]]  # per stream first seen in it: (stream seq, audit seq)


class Merged(NamedTuple):
    """Consecutive segments as one."""

    problems: list[Problem]
    records: int
    first_seq: int
    expected: int
    prev: bytes
    nexts: dict[str, int]


def merge_segments(segments: list[Segment], streams: Mapping[str, StreamExtent]) -> Merged:
    """Join consecutive segments: each must start where the previous ended, and each stream must
    resume in it at the next message after its last record in the segments before."""
    first = segments[0]
    problems, records, nexts = list(first.problems), first.records, dict(first.nexts)
    expected, prev = first.expected, first.prev
    for seg in segments[1:]:
        if problems:  # the chain broke earlier: boundaries after it mean nothing
            problems += seg.problems
            continue
        if seg.first_seq != expected:
            problems.append(Problem(DELETED, expected, f"records {expected}..{seg.first_seq - 1} are missing"))
        for name, (sseq, seq) in sorted(seg.stream_first.items(), key=lambda kv: kv[1][1]):
            ext, nxt = streams[name], nexts.get(name)
            if nxt is None or sseq == nxt or (sseq < nxt and (sseq < ext.first or sseq in ext.deleted)):
                continue
            if sseq < nxt:
                problems.append(Problem(REORDERED, seq, f"{name} seq {sseq} is recorded after {name} seq {nxt - 1}"))
            else:
                problems.append(Problem(MISSING, seq, f"{name} seq {nxt} has no record (the next recorded is {sseq})"))
        problems += seg.problems
        records += seg.records
        nexts.update(seg.nexts)
        expected, prev = seg.expected, seg.prev
    return Merged(sorted(problems, key=lambda p: p.seq), records, first.first_seq, expected, prev, nexts)

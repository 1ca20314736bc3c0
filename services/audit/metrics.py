"""The audit service's metrics: lag per stream (stream last sequence minus applied), records written."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from libs.observability.metrics import Registry, Sample

from .writer import Writer

BATCH_SIZES = (1, 10, 50, 100, 500, 1000, 5000)


class AuditMetrics:
    """Instruments of one audit service; ``watch`` adds what is read from its writer and streams at scrape time."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = r = registry or Registry()
        self.commit_seconds = r.histogram("stoker_audit_commit_seconds", "Time to commit one batch of records "
                                          "(retries included).")
        self.batch_records = r.histogram("stoker_audit_batch_records", "Records per committed batch.",
                                         buckets=BATCH_SIZES)

    def written(self, seconds: float, records: int) -> None:
        """One batch was committed."""
        self.commit_seconds.observe(seconds)
        self.batch_records.observe(float(records))

    def watch(self, writer: Callable[[], Writer | None], lag: Callable[[], Awaitable[dict[str, int]]]) -> None:
        """Lag (an async look-up of each stream's last sequence) and the writer's counts."""
        async def lag_samples() -> Iterable[Sample]:
            if writer() is None:
                return []
            return [({"stream": stream}, float(n)) for stream, n in (await lag()).items()]

        def of(read: Callable[[Writer], float]) -> Callable[[], Iterable[Sample]]:
            def samples() -> Iterable[Sample]:
                w = writer()
                return [] if w is None else [({}, float(read(w)))]
            return samples

        def applied() -> Iterable[Sample]:
            w = writer()
            return [] if w is None else [({"stream": s}, float(q)) for s, q in sorted(w.cursors.items())]

        r = self.registry
        r.callback("stoker_audit_lag_messages", "gauge", "Messages stored in a stream and not yet recorded.",
                   lag_samples)
        r.callback("stoker_audit_applied_seq", "gauge", "The last stream sequence recorded, per stream.", applied)
        r.callback("stoker_audit_records_written_total", "counter", "Audit records written by this process.",
                   of(lambda w: w.written))
        r.callback("stoker_audit_write_failures_total", "counter", "Failed batch writes (each retried).",
                   of(lambda w: w.failures))
        r.callback("stoker_audit_chain_head_seq", "gauge", "Sequence of the last committed record.",
                   of(lambda w: w.head.seq))

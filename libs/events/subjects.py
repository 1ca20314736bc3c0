"""Every stream, subject, durable consumer and bucket name Stoker uses, in one place.

Events: one subject per aggregate instance, ``ev.<context>.<aggregate type>.<id>``,
one stream per bounded context. Commands travel by core NATS request/reply on
``cmd.<context>.<verb>``; step-by-step progress on plain ``progress.*`` subjects.
"""

from __future__ import annotations

from .envelope import Aggregate
from .ids import is_subject_token

# Bounded contexts, each with its own event stream.
POOL = "pool"
GENERATION = "gen"
ACCOUNTS = "acct"
AUDIT = "audit"
CONTEXTS = (POOL, GENERATION, ACCOUNTS, AUDIT)

EVENT_STREAMS = {
    POOL: "EVENTS_POOL",
    GENERATION: "EVENTS_GEN",
    ACCOUNTS: "EVENTS_ACCT",
    AUDIT: "EVENTS_AUDIT",
}

# Work queue for generation jobs (several workers share it).
JOBS_STREAM = "JOBS"
JOBS_SUBJECT = "jobs.gen"  # + ".<pool id>": each pool's workers share only that pool's jobs
JOBS_DURABLE = "gen-workers"  # + "-<pool id>"

# Messages a consumer could not process, kept for inspection.
QUARANTINE_STREAM = "QUARANTINE"
QUARANTINE_SUBJECTS = "quarantine.>"

# Durable consumers.
AUDIT_DURABLE = "audit"

# Key-value and object store buckets.
CHECKPOINT_BUCKET = "stoker-checkpoints"
LEASE_BUCKET = "stoker-leases"
OUTPUT_BUCKET = "stoker-outputs"
GEN_SECRETS_BUCKET = "stoker-gen-secrets"  # the generation service's webhook signing master key
POOL_SECRETS_BUCKET = "stoker-pool-secrets"  # the pool's key the instance secrets derive from (pool only)
HEARTBEAT_BUCKET = "stoker-agent-heartbeats"  # heartbeats of joined boxes (pool only)

# Command subjects (request/reply).
CMD_POOL = "cmd.pool"
CMD_GENERATION = "cmd.gen"
CMD_AUDIT = "cmd.audit"
AUDIT_QUERY = "cmd.audit.query"  # scoped by chain: cmd.audit.<chain>.query (pages of records)
AUDIT_VERIFY = "cmd.audit.verify"  # scoped by chain: cmd.audit.<chain>.verify (only where the key lives)
AUDIT_READERS = "audit-readers"  # queue group of every audit process that answers queries


def scoped(command_subject: str, scope: str) -> str:
    """A command subject for one pool: ``cmd.pool.claim`` -> ``cmd.pool.<scope>.claim``.

    Services subscribe only to their own pool's commands, so several pools (or tests) can share a NATS.
    """
    if not is_subject_token(scope):
        raise ValueError(f"not usable in a subject: {scope!r}")
    prefix, verb = command_subject.rsplit(".", 1)
    return f"{prefix}.{scope}.{verb}"


def jobs_subject(scope: str) -> str:
    """The work-queue subject of one pool's generation jobs."""
    return f"{JOBS_SUBJECT}.{scope}"


def jobs_durable(scope: str) -> str:
    """The durable consumer one pool's generation workers share."""
    return f"{JOBS_DURABLE}-{scope}"


def events_filter(context: str) -> str:
    """The wildcard subject covering every event of a bounded context."""
    return f"ev.{context}.>"


def event_stream(context: str) -> str:
    """The stream holding a bounded context's events."""
    return EVENT_STREAMS[context]


def aggregate_subject(aggregate: Aggregate) -> str:
    """The one subject carrying an aggregate instance's events."""
    for token in aggregate:
        if not is_subject_token(token):
            raise ValueError(f"not usable in a subject: {token!r}")
    return f"ev.{aggregate.context}.{aggregate.type}.{aggregate.id}"


def aggregate_of(subject: str) -> Aggregate:
    """Parse an event subject back into its aggregate."""
    prefix, context, type_, id_ = subject.split(".", 3)
    if prefix != "ev":
        raise ValueError(f"not an event subject: {subject!r}")
    return Aggregate(context, type_, id_)


def aggregates_of_type(context: str, type_: str) -> str:
    """The wildcard subject over all aggregates of one type (``ev.pool.instance.*``)."""
    return f"ev.{context}.{type_}.*"


def command(context_prefix: str, verb: str) -> str:
    """A command subject such as ``cmd.pool.claim``."""
    return f"{context_prefix}.{verb}"


def progress_subject(job_id: str) -> str:
    """Plain-NATS subject for a generation job's step-by-step progress."""
    return f"progress.gen.{job_id}"


def quarantine_subject(consumer: str) -> str:
    """Where a consumer puts messages it could not process."""
    return f"quarantine.{consumer}"

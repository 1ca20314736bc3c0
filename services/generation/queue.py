"""Messages on the JOBS work queue (``jobs.gen``): run a job, or deliver its webhook."""

from __future__ import annotations

import msgspec
from nats.js import JetStreamContext

from libs.events import codec, subjects
from libs.observability import tracing


class JobMessage(msgspec.Struct, frozen=True, kw_only=True, tag="job"):
    """Run (or resume) job ``job_id``; ``checkpoint`` lets the worker claim before it reads the job."""

    job_id: str
    checkpoint: str | None = None


class WebhookMessage(msgspec.Struct, frozen=True, kw_only=True, tag="webhook"):
    """Deliver the webhook of finished job ``job_id`` (retries are naks with a delay)."""

    job_id: str


QueueMessage = JobMessage | WebhookMessage
_decoder = msgspec.json.Decoder(QueueMessage)


def decode(data: bytes) -> QueueMessage:
    """Parse a work-queue message (msgspec errors for anything else)."""
    message: QueueMessage = _decoder.decode(data)
    return message


async def enqueue_job(js: JetStreamContext, job_id: str, checkpoint: str | None, scope: str) -> int:
    """Put a job on the queue (deduplicated by job id, carrying the current trace); returns its stream sequence."""
    ack = await js.publish(subjects.jobs_subject(scope), codec.encode(JobMessage(job_id=job_id, checkpoint=checkpoint)),
                           stream=subjects.JOBS_STREAM, headers=tracing.inject({"Nats-Msg-Id": f"job:{job_id}"}))
    return ack.seq


async def enqueue_webhook(js: JetStreamContext, job_id: str, scope: str) -> None:
    """Put a job's webhook delivery on the queue (deduplicated by job id, carrying the current trace)."""
    await js.publish(subjects.jobs_subject(scope), codec.encode(WebhookMessage(job_id=job_id)),
                     stream=subjects.JOBS_STREAM, headers=tracing.inject({"Nats-Msg-Id": f"webhook:{job_id}"}))

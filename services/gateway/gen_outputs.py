"""Serving stored outputs: bytes streamed chunk by chunk from the JetStream object store.

The object store keeps an object as chunk messages; they are written to the response as
they arrive (an ordered consumer), so a large video never sits in the gateway's memory.
Outputs are user content served from the gateway's own origin: only media types that
cannot run script are shown inline, and every answer carries a sandboxing CSP.
"""

from __future__ import annotations

import hashlib
import logging
import re
from urllib.parse import quote

from aiohttp import web
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, NotFoundError, ObjectNotFoundError
from nats.js.object_store import OBJ_CHUNKS_PRE_TEMPLATE

from libs.events import generation as ev
from libs.events import subjects
from services.gateway.errors import ApiError

log = logging.getLogger("stoker.gateway")

INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif", "video/mp4", "video/webm",
                          "audio/mpeg", "audio/wav", "audio/x-wav", "audio/flac", "audio/ogg", "text/plain"})
OUTPUT_CSP = "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; sandbox"
CHUNK_TIMEOUT_S = 10.0
_UNSAFE_FILENAME = re.compile(r'[^A-Za-z0-9._\- ]')


def disposition(filename: str, content_type: str, *, attachment: bool = False) -> str:
    """``Content-Disposition``: inline for media that cannot script, attachment otherwise; ASCII and UTF-8 names."""
    kind = "attachment" if attachment or content_type not in INLINE_TYPES else "inline"
    ascii_name = _UNSAFE_FILENAME.sub("_", filename)[:200] or "output"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename[:200], safe='')}"


def etag(output: ev.Output) -> str:
    """A strong ETag: the content's sha256."""
    return f'"{output.sha256}"'


def not_found() -> ApiError:
    """The one answer for a missing output (someone else's is missing too)."""
    return ApiError(404, "NOT_FOUND", "no such output")


async def stream_output(request: web.Request, js: JetStreamContext, output: ev.Output, *,
                        disposition_header: str | None = None) -> web.StreamResponse:
    """The output's bytes with its content type, ETag and Content-Disposition (304 when the ETag matches)."""
    tag = etag(output)
    content_type = output.content_type if output.content_type in INLINE_TYPES else "application/octet-stream"
    headers = {"ETag": tag, "Cache-Control": "private, no-cache", "Content-Security-Policy": OUTPUT_CSP,
               "Content-Disposition": disposition_header or disposition(output.filename, output.content_type)}
    if tag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        return web.Response(status=304, headers=headers)
    try:
        store = await js.object_store(subjects.OUTPUT_BUCKET)
        info = await store.get_info(output.object_name)
    except (BucketNotFoundError, ObjectNotFoundError, NotFoundError):
        raise not_found() from None
    response = web.StreamResponse(headers={**headers, "Content-Type": content_type})
    response.content_length = info.size or 0
    if not info.size:
        await response.prepare(request)
        await response.write_eof()
        return response
    sub = await js.subscribe(OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=subjects.OUTPUT_BUCKET, obj=info.nuid),
                             stream=f"OBJ_{subjects.OUTPUT_BUCKET}", ordered_consumer=True)
    digest = hashlib.sha256()
    try:
        msg = await sub.next_msg(CHUNK_TIMEOUT_S)
        await response.prepare(request)
        while True:
            digest.update(msg.data)
            await response.write(msg.data)
            if msg.metadata.num_pending == 0:
                break
            msg = await sub.next_msg(CHUNK_TIMEOUT_S)
    except TimeoutError:
        if not response.prepared:
            raise ApiError(503, "UNAVAILABLE", "the output store did not answer in time; retry",
                           headers={"Retry-After": "5"}) from None
        log.warning("output %s: a chunk did not arrive; the download is cut short", output.object_name)
        return response  # shorter than its Content-Length: the client sees it is incomplete
    finally:
        await sub.unsubscribe()
    if digest.hexdigest() != output.sha256:
        log.error("output %s: stored bytes do not match the recorded sha256", output.object_name)
    await response.write_eof()
    return response

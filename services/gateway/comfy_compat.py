"""A ComfyUI-compatible API under ``/comfy/``: existing ComfyUI clients run on the warm pool unchanged.

``POST /comfy/prompt`` submits the workflow as a generation (``comfy:<prompt id>`` is its
idempotency key, so the prompt id finds the job again); history, queue, view and the socket
answer from the gateway's generation projection and the object store, in ComfyUI's shapes
(see comfy_shapes.py and /work/shared/specs/comfyui-api.md). A Stoker token travels as
``Authorization: Bearer`` or ``?token=``; a user only ever sees their own prompts.
``system_stats`` and ``object_info`` come from a Ready instance (comfy_proxy.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import uuid
from typing import Any

from aiohttp import web

from services.gateway import comfy_files
from services.gateway import comfy_shapes as shapes
from services.gateway import comfy_ws
from services.gateway.errors import ApiError
from services.gateway.gen_access import account, fields
from services.gateway.gen_outputs import disposition, not_found, stream_output
from services.gateway.resources import COMFY_CLIENTS, COMFY_INFO, GEN_CLIENT, GEN_READS, JS
from services.gateway.routing import SAFE_PATH_VALUE, Call, Operation, json_response
from services.gateway.schemas import comfy as c
from services.generation import api
from services.generation.commands import job_id_for
from services.generation.domain import Job

log = logging.getLogger("stoker.gateway")

HISTORY_DEFAULT = 200  # entries when the client does not say how many (ComfyUI keeps up to 10000)
HISTORY_MAX = 1000
FILE_TYPES = ("output", "input", "temp")
_TOKEN = re.compile(r"([?&]token=)[^&\s\"]*")


class RedactTokens(logging.Filter):
    """Keep ``?token=`` values out of access logs (ComfyUI clients may send their token in the URL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "token=" in record.msg:
            record.msg = _TOKEN.sub(r"\1<redacted>", record.msg)
        return True


logging.getLogger("aiohttp.access").addFilter(RedactTokens())


def _empty() -> web.Response:
    """ComfyUI's answer to control requests: 200 with an empty body."""
    return web.Response(status=200)


async def resolve(call: Call, prompt_id: str) -> Job | None:
    """The caller's job a prompt id names (posted here: by its idempotency key; otherwise its job id)."""
    user_id = call.who.user_id
    if user_id is None:
        return None  # the admin key owns no prompts
    reads = call.app[GEN_READS]
    for job_id in (job_id_for(user_id, shapes.COMFY_KEY + prompt_id), prompt_id):
        job = await reads.find_job(job_id, user_id)
        if job is not None:
            return job
    return None


def _number(call: Call, job: Job) -> int:
    return call.app[GEN_READS].jobs.job_seq.get(job.id, 0)


async def _workflow(call: Call, job: Job) -> dict[str, Any]:
    request = await call.app[GEN_READS].request_of(job.id)
    if request is None:
        return {}
    return request.prompt or request.workflow or {}


async def post_prompt(call: Call) -> Any:
    """Queue a workflow; 200 ``{prompt_id, number, node_errors}``, or ComfyUI's 400 with ``node_errors``."""
    body: c.ComfyPromptBody = call.body
    user_id = account(call)
    if body.prompt is None:
        return json_response(shapes.comfy_error("no_prompt", "No prompt provided", "No prompt provided"), 400)
    if not body.prompt:
        return json_response(shapes.comfy_error("prompt_no_outputs", "Prompt has no outputs"), 400)
    if body.partial_execution_targets is not None:
        return json_response(shapes.comfy_error("invalid_prompt", "partial_execution_targets is not supported "
                                                                  "here: remove the outputs you do not want"), 400)
    prompt_id = body.prompt_id or str(uuid.uuid4())
    if not SAFE_PATH_VALUE.match(prompt_id):
        return json_response(shapes.comfy_error("invalid_prompt", "prompt_id must be 1-128 letters, digits or "
                                                                  "_-:."), 400)
    if body.client_id:
        # Bound before submitting: the job may start before the submit's answer arrives.
        call.app[COMFY_CLIENTS].bind(job_id_for(user_id, shapes.COMFY_KEY + prompt_id), body.client_id)
    request = api.SubmitRequest(workflow=body.prompt, idempotency_key=shapes.COMFY_KEY + prompt_id,
                                **fields(call, user_id))
    try:
        result: api.SubmitResult = await call.app[GEN_CLIENT].call(api.SUBMIT, request, api.SubmitResult)
    except ApiError as exc:
        if exc.code in ("VALIDATION_FAILED", "CHECKPOINT_UNAVAILABLE"):
            return json_response(shapes.prompt_error(exc.message, exc.details), 400)
        raise
    job = await call.app[GEN_READS].find_job(result.job_id, user_id)
    number = _number(call, job) if job is not None else 0
    return c.ComfyPromptResult(prompt_id=prompt_id, number=number, node_errors={})


async def get_prompt_info(call: Call) -> Any:
    """``{"exec_info": {"queue_remaining": n}}``: your queued and running prompts."""
    user_id = call.who.user_id
    return {"exec_info": {"queue_remaining": comfy_ws.queue_remaining(call.app[GEN_READS], user_id) if user_id else 0}}


async def _entry(call: Call, job: Job) -> dict[str, Any]:
    texts = await comfy_ws.texts_of(call.app[JS], job)
    return shapes.history_entry(job, _number(call, job), await _workflow(call, job),
                                call.app[COMFY_CLIENTS].client_of(job.id), texts)


async def history_one(call: Call) -> Any:
    """``{prompt_id: entry}`` once the prompt finished; ``{}`` before, or for an unknown (or another's) prompt."""
    prompt_id = call.path("prompt_id")
    job = await resolve(call, prompt_id)
    if job is None or not job.terminal:
        return {}
    return {shapes.prompt_id_of(job): await _entry(call, job)}


async def history(call: Call) -> Any:
    """Your finished prompts, oldest first; ``max_items``: the newest N; ``offset``: skip K from the oldest."""
    q: c.ComfyHistoryQuery = call.query
    view = call.app[GEN_READS].jobs
    done = sorted((job for j in view.by_user.get(call.who.user_id or "", []) if (job := view.jobs[j]).terminal),
                  key=lambda job: (job.finished_at is None, job.finished_at, view.job_seq.get(job.id, 0)))
    count = min(q.max_items or HISTORY_DEFAULT, HISTORY_MAX)
    offset = q.offset if q.offset is not None and q.offset >= 0 else max(0, len(done) - count)
    chosen = done[offset:offset + count]
    entries = await asyncio.gather(*(_entry(call, job) for job in chosen))
    return {shapes.prompt_id_of(job): entry for job, entry in zip(chosen, entries, strict=True)}


async def get_queue(call: Call) -> Any:
    """Your running and pending prompts as ComfyUI's 5-element items, pending by number."""
    user_id = call.who.user_id
    view = call.app[GEN_READS].jobs
    clients = call.app[COMFY_CLIENTS]

    async def items(job_ids: list[str]) -> list[list[Any]]:
        jobs = sorted((job for j in job_ids if (job := view.jobs.get(j)) is not None and job.user_id == user_id),
                      key=lambda job: view.job_seq.get(job.id, 0))
        flows = await asyncio.gather(*(_workflow(call, job) for job in jobs))
        return [shapes.queue_item(job, _number(call, job), flow, clients.client_of(job.id))
                for job, flow in zip(jobs, flows, strict=True)]

    return {"queue_running": await items(list(view.running)), "queue_pending": await items(list(view.queued))}


async def _cancel(call: Call, jobs: list[Job]) -> None:
    for job in jobs:
        try:
            await call.app[GEN_CLIENT].send(api.CANCEL, api.CancelRequest(job_id=job.id,
                                                                          **fields(call, job.user_id)))
        except ApiError as exc:
            if exc.status >= 500:
                raise
            log.info("comfy cancel of %s: %s", job.id, exc.code)  # it ended meanwhile


def _own(call: Call, status: str) -> list[Job]:
    """The caller's jobs in ``status``, oldest first (none for the admin key)."""
    view = call.app[GEN_READS].jobs
    return [job for j in view.by_user.get(call.who.user_id or "", []) if (job := view.jobs[j]).status == status]


async def post_queue(call: Call) -> Any:
    """``{"delete": [prompt ids]}`` removes those pending prompts; ``{"clear": true}`` all of yours."""
    body: c.ComfyQueueBody = call.body
    pending = _own(call, "queued")
    if not body.clear:
        wanted = set(body.delete or ())
        pending = [job for job in pending if shapes.prompt_id_of(job) in wanted]
    await _cancel(call, pending)
    return _empty()


async def interrupt(call: Call) -> Any:
    """Interrupt your running prompt (only ``prompt_id`` if given; ComfyUI's is global, Stoker's is yours)."""
    body: c.ComfyInterruptBody = call.body
    running = _own(call, "running")
    if body.prompt_id is not None:
        running = [job for job in running if shapes.prompt_id_of(job) == body.prompt_id]
    await _cancel(call, running)
    return _empty()


async def view(call: Call) -> Any:
    """An output file of one of your prompts (``subfolder`` is the prompt id, as outputs list it)."""
    q: c.ComfyViewQuery = call.query
    if q.type not in FILE_TYPES:
        raise ApiError(400, "BAD_REQUEST", "type must be output, input or temp")
    if not q.filename:
        raise not_found()
    if q.filename.startswith("/") or ".." in q.filename:
        raise ApiError(400, "BAD_REQUEST", "invalid filename")
    if ".." in q.subfolder.split("/") or q.subfolder.startswith("/"):
        raise ApiError(403, "FORBIDDEN", "invalid subfolder")
    if q.type != "output":
        raise not_found()  # Stoker keeps outputs only
    output = None
    if q.subfolder:
        job = await resolve(call, q.subfolder) if SAFE_PATH_VALUE.match(q.subfolder) else None
        output = shapes.find_file(job, q.filename) if job is not None else None
    else:  # a client that drops the subfolder: the newest of your outputs with that name
        for job in reversed(_own(call, "completed")):
            if (output := shapes.find_file(job, q.filename)) is not None:
                break
    if output is None:
        raise not_found()
    return await stream_output(call.request, call.app[JS], output,
                               disposition_header=disposition(q.filename, output.content_type))


def _json(answer: Any, data: Any) -> web.Response:
    response = json_response(data)
    response.headers["X-Stoker-Source"] = answer.source
    return response


async def system_stats(call: Call) -> Any:
    """``/system_stats`` of a Ready instance (cached briefly)."""
    answer = await call.app[COMFY_INFO].get("/system_stats")
    return _json(answer, answer.data)


def _own_files(call: Call) -> frozenset[str]:
    return comfy_files.own_files(call.app[GEN_READS].jobs, call.who.user_id)


async def object_info(call: Call) -> Any:
    """``/object_info`` of a Ready instance (cached for a minute); file lists hold only the caller's files."""
    answer = await call.app[COMFY_INFO].get("/object_info")
    return _json(answer, comfy_files.for_caller(answer.data, _own_files(call)))


async def object_info_one(call: Call) -> Any:
    """``{Class: info}``; an unknown class is ``{}``."""
    answer = await call.app[COMFY_INFO].get("/object_info")
    name = call.path("node_class")
    one = {name: answer.data[name]} if name in answer.data else {}
    return _json(answer, comfy_files.for_caller(one, _own_files(call)))


TAG = "comfyui"
_AUTH = " A token may be given as `?token=`."
OPERATIONS = [
    Operation("POST", "/comfy/prompt", post_prompt, "comfy_post_prompt", "ComfyUI: queue a prompt", TAG,
              body=c.ComfyPromptBody, query=c.ComfyTokenQuery, response=c.ComfyPromptResult, errors=(503,),
              json_any_content_type=True, error_bodies=((400, c.ComfyError),),
              description="ComfyUI's `POST /prompt`. A refused workflow answers 400 in ComfyUI's own shape: "
                          "`{\"error\": {type, message, details, extra_info}, \"node_errors\": {...}}`. "
                          "`number` and `front` are accepted and ignored (Stoker's queue is first come, first "
                          "served)." + _AUTH),
    Operation("GET", "/comfy/prompt", get_prompt_info, "comfy_get_prompt", "ComfyUI: queue_remaining", TAG,
              query=c.ComfyTokenQuery, response=c.ComfyPromptInfo),
    Operation("GET", "/comfy/history", history, "comfy_history", "ComfyUI: your finished prompts", TAG,
              query=c.ComfyHistoryQuery,
              description="`{prompt_id: entry}` (see ComfyHistoryEntry), oldest first; at most "
                          f"{HISTORY_DEFAULT} unless `max_items` says (up to {HISTORY_MAX})." + _AUTH),
    Operation("GET", "/comfy/history/{prompt_id}", history_one, "comfy_history_one",
              "ComfyUI: one finished prompt's outputs", TAG, query=c.ComfyTokenQuery,
              description="`{prompt_id: entry}` once it finished, `{}` before (or for a prompt that is not yours)."),
    Operation("GET", "/comfy/queue", get_queue, "comfy_get_queue", "ComfyUI: your running and pending prompts", TAG,
              query=c.ComfyTokenQuery, response=c.ComfyQueue),
    Operation("POST", "/comfy/queue", post_queue, "comfy_post_queue", "ComfyUI: remove pending prompts", TAG,
              body=c.ComfyQueueBody, query=c.ComfyTokenQuery, errors=(503,),
              json_any_content_type=True),
    Operation("POST", "/comfy/interrupt", interrupt, "comfy_interrupt", "ComfyUI: interrupt your running prompt",
              TAG, body=c.ComfyInterruptBody, query=c.ComfyTokenQuery, errors=(503,),
              json_any_content_type=True),
    Operation("GET", "/comfy/view", view, "comfy_view", "ComfyUI: an output file", TAG, query=c.ComfyViewQuery,
              errors=(404, 503), media_type="image/*, video/*, application/octet-stream",
              description="`subfolder` is the prompt id (as history lists outputs); `preview` and `channel` are "
                          "ignored (the stored file is served)." + _AUTH),
    Operation("GET", "/comfy/ws", comfy_ws.websocket, "comfy_ws", "ComfyUI: the WebSocket", TAG,
              query=c.ComfyWsQuery,
              description="Upgrade to a WebSocket. Frames: `status`, then for prompts posted with this "
                          "`clientId`: `execution_start`, `execution_cached`, `executing`, `progress`, "
                          "`executed`, `execution_success` / `execution_error` / `execution_interrupted`, and "
                          "`executing` with `node: null` last." + _AUTH),
    Operation("GET", "/comfy/system_stats", system_stats, "comfy_system_stats", "ComfyUI: system stats", TAG,
              query=c.ComfyTokenQuery, response=c.ComfySystemStats,
              description="From a Ready instance (cached 5 s); `X-Stoker-Source` says instance, cache or fallback."),
    Operation("GET", "/comfy/object_info", object_info, "comfy_object_info", "ComfyUI: node definitions", TAG,
              query=c.ComfyTokenQuery,
              description="`{Class: {input, output, ...}}` from a Ready instance (cached 60 s); "
                          "`X-Stoker-Source` says instance, cache or fallback. File lists (`LoadImage` and "
                          "other inputs with an upload flag) hold only files of your own unfinished jobs."),
    Operation("GET", "/comfy/object_info/{node_class}", object_info_one, "comfy_object_info_one",
              "ComfyUI: one node definition", TAG, query=c.ComfyTokenQuery,
              description="`{Class: {...}}`; an unknown class is `{}`."),
]
# ComfyUI answers every route under /api/ too (its web UI and some clients use that prefix).
OPERATIONS += [dataclasses.replace(op, path=op.path.replace("/comfy/", "/comfy/api/", 1), name=f"{op.name}_api",
                                   summary=f"{op.summary} (the /api/ spelling)") for op in OPERATIONS]

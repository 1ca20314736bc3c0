"""Generation endpoints: submit (a template or your own workflow), estimate, read, list, cancel; outputs; templates.

Commands and reads go to the generation service over NATS (``cmd.gen.<verb>``); output bytes
are streamed from the object store after the gateway's projection says whose they are.
"""

from __future__ import annotations

import re
from typing import Any

from services.gateway import gen_views
from services.gateway.errors import validation_failed
from services.gateway.gen_access import account, fields, job_owner, scope
from services.gateway.gen_outputs import not_found, stream_output
from services.gateway.resources import GEN_CLIENT, GEN_READS, JS
from services.gateway.routing import Call, Operation, json_response, require_nats
from services.gateway.schemas import generation as g
from services.generation import api

IDEMPOTENCY_HEADER = "Idempotency-Key"
_KEY = re.compile(r"^[!-~ ]{1,200}$")
GEN_ERRORS = (404, 409, 503)


def _idempotency_key(call: Call, in_body: str | None) -> str | None:
    header = call.request.headers.get(IDEMPOTENCY_HEADER)
    if header is not None and not _KEY.match(header):
        raise validation_failed(f"{IDEMPOTENCY_HEADER} must be 1-200 printable ASCII characters")
    if header is not None and in_body is not None and header != in_body:
        raise validation_failed(f"the {IDEMPOTENCY_HEADER} header and idempotency_key differ")
    return header if header is not None else in_body


async def object_name(call: Call, user_id: str, value: str) -> str:
    """An output id of the user's own output as its object name (anything else is passed on as given)."""
    parsed = gen_views.parse_output_id(value)
    if parsed is None:
        return value
    reads = call.app[GEN_READS]
    job = await reads.find_job(parsed[0], user_id)
    out = gen_views.find_output(job, parsed[1]) if job is not None else None
    return out.object_name if out is not None else value


async def _template_fields(call: Call, user_id: str, body: Any) -> dict[str, Any]:
    params = gen_views.template_params(body)
    if isinstance(params.get("image"), str):
        params["image"] = await object_name(call, user_id, params["image"])
    return {"template": body.template, "params": params, "preset": body.preset, "workflow": body.workflow,
            "muse_id": body.muse_id, "muse_variation": body.muse_variation}


async def _with_loras(call: Call, generations: list[g.Generation]) -> list[g.Generation]:
    """The generations with the LoRAs their workflows apply (read from each request event, cached)."""
    found = await call.app[GEN_READS].loras([gen.id for gen in generations])
    for gen in generations:
        gen.loras = found.get(gen.id, [])
    return generations


async def create_generation(call: Call) -> Any:
    """Queue a generation; a repeated idempotency key answers 200 with the existing one."""
    body = call.body
    user_id = account(call)
    request = api.SubmitRequest(**await _template_fields(call, user_id, body),
                                idempotency_key=_idempotency_key(call, body.idempotency_key),
                                webhook_url=body.webhook_url, **fields(call, user_id))
    result: api.SubmitResult = await call.app[GEN_CLIENT].call(api.SUBMIT, request, api.SubmitResult)
    created = g.GenerationCreated(id=result.job_id, created=result.created, status=result.status,  # type: ignore[arg-type]
                                  estimated_cost=result.estimated_cost, expected_seconds=result.expected_seconds,
                                  generation=gen_views.generation_of(result.job))
    return json_response(created, 201 if result.created else 200,
                         headers={"Location": f"/api/v1/generations/{result.job_id}"})


async def estimate(call: Call) -> Any:
    """What a generation would cost; nothing is queued."""
    user_id = account(call)
    request = api.EstimateRequest(**await _template_fields(call, user_id, call.body), **fields(call, user_id))
    return await call.app[GEN_CLIENT].call(api.ESTIMATE, request, g.Estimate)


async def get_generation(call: Call) -> Any:
    """One generation with its waiting reason, progress, outputs and cost."""
    job_id = call.path("id")
    user_id = await job_owner(call, job_id)
    view = await call.app[GEN_CLIENT].call(api.GET, api.GetRequest(job_id=job_id, **fields(call, user_id)),
                                           api.JobView)
    return (await _with_loras(call, [gen_views.generation_of(view)]))[0]


async def list_generations(call: Call) -> Any:
    """Your generations, newest first (keyset pages)."""
    q: g.GenerationsQuery = call.query
    user_id = scope(call, q.user_id)
    if user_id is None:
        return g.GenerationPage(items=[])
    page = await call.app[GEN_CLIENT].call(api.LIST, api.ListRequest(limit=q.limit, cursor=q.before, status=q.status,
                                                                      **fields(call, user_id)), api.JobPage)
    items = await _with_loras(call, [gen_views.generation_of(v) for v in page.items])
    return g.GenerationPage(items=items, next=page.next_cursor)


async def cancel_generation(call: Call) -> Any:
    """Cancel: a queued generation ends now, a running one is interrupted on its instance."""
    job_id = call.path("id")
    user_id = await job_owner(call, job_id)
    view = await call.app[GEN_CLIENT].call(api.CANCEL, api.CancelRequest(job_id=job_id, **fields(call, user_id)),
                                           api.JobView)
    return gen_views.generation_of(view)


async def list_templates(call: Call) -> Any:
    """Templates with their parameters and presets, and the checkpoints available now."""
    who = call.who
    request = api.TemplatesRequest(actor=who.actor, user_id=who.user_id or "admin", correlation_id=call.correlation_id)
    return await call.app[GEN_CLIENT].call(api.TEMPLATES, request, g.TemplateList)


async def get_output(call: Call) -> Any:
    """The output's bytes (yours; admins: anyone's) with its content type, ETag and Content-Disposition."""
    parsed = gen_views.parse_output_id(call.path("id"))
    if parsed is None:
        raise not_found()
    job_id, index = parsed
    who = call.who
    reads = call.app[GEN_READS]
    owner = None if who.is_admin else account(call)
    job = await reads.find_job(job_id, owner)
    output = gen_views.find_output(job, index) if job is not None else None
    if job is not None and output is None and not job.terminal:
        await reads.settle()  # just completed: the projection may not have the outputs yet
        job = reads.job(job_id, owner)
        output = gen_views.find_output(job, index) if job is not None else None
    if output is None:
        raise not_found()
    require_nats(call.app)  # the bytes are in JetStream: 503 now rather than after its timeout
    return await stream_output(call.request, call.app[JS], output)


_OUTPUT_DOC = ("The bytes stream from the object store. Images, video, audio and plain text are shown inline; "
               "anything else is an attachment. `If-None-Match` with the ETag answers 304.")
OPERATIONS = [
    Operation("POST", "/api/v1/generations", create_generation, "create_generation", "Queue a generation",
              "generations", body=g.GenerationBody, response=g.GenerationCreated, status=201, errors=GEN_ERRORS,
              description="A template and its parameters as top-level fields (`{\"template\": \"txt2img\", "
                          "\"prompt\": \"...\", \"seed\": 7}`), or `{\"workflow\": {...}}` in ComfyUI's API "
                          "format. An `Idempotency-Key` header (or `idempotency_key`) makes retries safe: the "
                          "same key answers 200 with the same generation. Invalid workflows answer 422 with "
                          "ComfyUI's `node_errors` in `details`."),
    Operation("POST", "/api/v1/generations/estimate", estimate, "estimate_generation",
              "What a generation would cost", "generations", body=g.EstimateBody, response=g.Estimate,
              errors=GEN_ERRORS),
    Operation("GET", "/api/v1/generations", list_generations, "list_generations", "Your generations, newest first",
              "generations", query=g.GenerationsQuery, response=g.GenerationPage, errors=GEN_ERRORS),
    Operation("GET", "/api/v1/generations/{id}", get_generation, "get_generation",
              "One generation: status, waiting reason, progress, outputs, cost", "generations",
              response=g.Generation, errors=GEN_ERRORS),
    Operation("POST", "/api/v1/generations/{id}/cancel", cancel_generation, "cancel_generation",
              "Cancel a generation", "generations", response=g.Generation, errors=GEN_ERRORS),
    Operation("GET", "/api/v1/outputs/{id}", get_output, "get_output", "Download an output", "generations",
              errors=(404, 503), media_type="image/*, video/*, application/octet-stream",
              description=_OUTPUT_DOC),
    Operation("GET", "/api/v1/templates", list_templates, "list_templates", "Templates, presets and checkpoints",
              "generations", response=g.TemplateList, errors=(503,)),
]


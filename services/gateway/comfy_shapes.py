"""ComfyUI's JSON shapes (history entries, queue items, WebSocket frames, the 400 answer), made from Stoker
jobs. Pure. See /work/shared/specs/comfyui-api.md.

A prompt id maps to a job without any table: a prompt posted through ``/comfy/prompt`` is
submitted with the idempotency key ``comfy:<prompt id>``, so its job id is the generation
service's ``job_id_for(user, key)``; any other job's prompt id is its job id. Outputs appear
with ``subfolder`` = the prompt id, so ``/view`` finds the job again from what it is given.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from libs.events import generation as ev
from services.generation.domain import Job
from services.generation.workflow import is_output

COMFY_KEY = "comfy:"
INTERRUPTED = frozenset({"cancelled", "interrupted"})


def ms(when: datetime | None) -> int:
    """A time as ComfyUI's Unix milliseconds (0 when unknown)."""
    return int(when.timestamp() * 1000) if when is not None else 0


def prompt_id_of(job: Job) -> str:
    """The prompt id a ComfyUI client knows the job by."""
    key = job.request.idempotency_key if job.request is not None else None
    return key[len(COMFY_KEY):] if key and key.startswith(COMFY_KEY) else job.id


def kind_of(content_type: str) -> str:
    """The key of ComfyUI's UI output dict for a file (VideoHelperSuite's ``gifs`` for video)."""
    if content_type.startswith("video/"):
        return "gifs"
    if content_type.startswith("audio/"):
        return "audio"
    if content_type == "text/plain":
        return "text"
    return "images"


def live_outputs(job: Job) -> list[ev.Output]:
    """The job's outputs not deleted from the gallery."""
    return [o for o in job.outputs if o.object_name not in job.deleted]


def file_name(job: Job, output: ev.Output) -> str:
    """The name ``/view`` serves an output under: ComfyUI's own, unless two outputs of the job share it."""
    counts = Counter(o.filename for o in job.outputs)
    return output.filename if counts[output.filename] == 1 else output.object_name.rsplit("/", 1)[-1]


def find_file(job: Job, filename: str) -> ev.Output | None:
    """The job's output ``/view?filename=`` names."""
    for out in live_outputs(job):
        if file_name(job, out) == filename or out.object_name.rsplit("/", 1)[-1] == filename:
            return out
    return None


def ui_outputs(job: Job, texts: dict[str, str]) -> dict[str, dict[str, list[Any]]]:
    """node id -> ComfyUI's UI output (``{"images": [{filename, subfolder, type}]}``; ``texts``: object name ->
    text of text outputs)."""
    pid = prompt_id_of(job)
    out: dict[str, dict[str, list[Any]]] = {}
    for o in live_outputs(job):
        kind = kind_of(o.content_type)
        node = out.setdefault(o.node_id or "0", {})
        if kind == "text":
            node.setdefault("text", []).append(texts.get(o.object_name, ""))
        else:
            node.setdefault(kind, []).append({"filename": file_name(job, o), "subfolder": pid, "type": "output"})
    return out


def output_nodes(workflow: dict[str, Any]) -> list[str]:
    """Ids of the workflow's output nodes (ComfyUI's ``outputs_to_execute``)."""
    return [nid for nid, node in workflow.items()
            if isinstance(node, dict) and isinstance(node.get("class_type"), str) and is_output(node["class_type"])]


def queue_item(job: Job, number: int, workflow: dict[str, Any], client_id: str | None) -> list[Any]:
    """``[number, prompt_id, prompt, extra_data, outputs_to_execute]``."""
    extra = {"client_id": client_id} if client_id else {}
    return [number, prompt_id_of(job), workflow, extra, output_nodes(workflow)]


def end_message(job: Job) -> tuple[str, dict[str, Any]]:
    """``execution_success``, ``execution_error`` or ``execution_interrupted`` of a finished job."""
    pid = prompt_id_of(job)
    at = ms(job.finished_at)
    fail = job.failure
    if job.status == "completed" or fail is None:
        return "execution_success", {"prompt_id": pid, "timestamp": at}
    where: dict[str, Any] = {"prompt_id": pid, "node_id": fail.node_id, "node_type": fail.node_type, "executed": []}
    if fail.reason in INTERRUPTED:
        return "execution_interrupted", {**where, "timestamp": at}
    return "execution_error", {**where, "exception_message": fail.message, "exception_type": fail.reason,
                               "traceback": [], "current_inputs": {}, "current_outputs": [], "timestamp": at,
                               "node_errors": dict(fail.node_errors)}


def history_entry(job: Job, number: int, workflow: dict[str, Any], client_id: str | None,
                  texts: dict[str, str]) -> dict[str, Any]:
    """A finished job as ``GET /history/{prompt_id}`` shows its entry."""
    pid = prompt_id_of(job)
    messages: list[list[Any]] = []
    if job.started_at is not None:
        messages.append(["execution_start", {"prompt_id": pid, "timestamp": ms(job.started_at)}])
        messages.append(["execution_cached", {"nodes": [], "prompt_id": pid, "timestamp": ms(job.started_at)}])
    messages.append(list(end_message(job)))
    outputs = ui_outputs(job, texts)
    return {"prompt": queue_item(job, number, workflow, client_id), "outputs": outputs,
            "status": {"status_str": "success" if job.status == "completed" else "error",
                       "completed": job.status == "completed", "messages": messages},
            "meta": {nid: {"node_id": nid, "display_node": nid, "parent_node": None, "real_node_id": nid}
                     for nid in outputs}}


def frame(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """One WebSocket text frame."""
    return {"type": kind, "data": data}


def status_frame(queue_remaining: int, sid: str | None = None) -> dict[str, Any]:
    """``status``: how many prompts (of this user) are queued or running."""
    data: dict[str, Any] = {"status": {"exec_info": {"queue_remaining": queue_remaining}}}
    if sid is not None:
        data["sid"] = sid
    return frame("status", data)


def progress_frames(prompt_id: str, kind: str, node: str | None, step: int | None, maximum: int | None,
                    at_ms: int) -> list[dict[str, Any]]:
    """The frames ComfyUI sends for one of Stoker's progress messages (started, cached, executing, progress)."""
    if kind == "started":
        return [frame("execution_start", {"prompt_id": prompt_id, "timestamp": at_ms})]
    if kind == "cached":
        return [frame("execution_cached", {"nodes": [], "prompt_id": prompt_id, "timestamp": at_ms})]
    if kind == "executing" and node is not None:
        return [frame("executing", {"node": node, "display_node": node, "prompt_id": prompt_id})]
    if kind == "progress" and step is not None and maximum is not None:
        return [frame("progress", {"value": step, "max": maximum, "prompt_id": prompt_id, "node": node})]
    return []


def end_frames(job: Job, texts: dict[str, str], queue_remaining: int) -> list[dict[str, Any]]:
    """The frames that close a prompt: ``executed`` per output node, the outcome, ``status``, ``executing`` null."""
    pid = prompt_id_of(job)
    frames = []
    if job.status == "completed":
        frames = [frame("executed", {"node": nid, "display_node": nid, "output": ui, "prompt_id": pid})
                  for nid, ui in ui_outputs(job, texts).items()]
    frames.append(frame(*end_message(job)))
    frames.append(status_frame(queue_remaining))
    frames.append(frame("executing", {"node": None, "prompt_id": pid}))
    return frames


def prompt_error(message: str, details: Any) -> dict[str, Any]:
    """ComfyUI's 400 answer to ``POST /prompt`` for a refusal of the generation service."""
    node_errors = details.get("node_errors") if isinstance(details, dict) else None
    if node_errors:
        error = {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                 "details": message, "extra_info": {}}
    elif "no output node" in message:
        error = {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": message,
                 "extra_info": {}}
    else:
        error = {"type": "invalid_prompt", "message": message, "details": message, "extra_info": {}}
    return {"error": error, "node_errors": node_errors or {}}


def comfy_error(kind: str, message: str, details: str = "") -> dict[str, Any]:
    """A 400 answer of ComfyUI's shape with no node errors."""
    return {"error": {"type": kind, "message": message, "details": details, "extra_info": {}}, "node_errors": {}}

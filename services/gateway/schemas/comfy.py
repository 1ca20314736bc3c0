"""Request and response types of the ComfyUI-compatible routes (``/comfy/``), shaped as ComfyUI's own."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from services.gateway.schemas.base import Checked

__all__ = [
    "ComfyError", "ComfyErrorDetail",
    "ComfyHistoryEntry", "ComfyHistoryQuery", "ComfyInterruptBody", "ComfyPromptBody",
    "ComfyPromptInfo", "ComfyPromptResult", "ComfyQueue", "ComfyQueueBody", "ComfySystemStats", "ComfyTokenQuery",
    "ComfyViewQuery", "ComfyWsQuery",
]

Token = Annotated[str, Meta(max_length=200, description="a Stoker token, for clients that cannot send headers")]
PromptId = Annotated[str, Meta(max_length=128)]


class ComfyTokenQuery(Checked, kw_only=True, forbid_unknown_fields=True):
    """Only the optional token."""

    token: Token | None = None


class ComfyPromptBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """ComfyUI's ``POST /prompt``: an API-format workflow and the client id whose socket gets its progress."""

    prompt: dict[str, Any] | None = None
    client_id: Annotated[str, Meta(max_length=128)] | None = None
    prompt_id: PromptId | None = None
    extra_data: dict[str, Any] = {}
    front: bool | None = None
    number: float | None = None
    partial_execution_targets: list[str] | None = None


class ComfyErrorDetail(msgspec.Struct, kw_only=True):
    """ComfyUI's error: a kind (``invalid_prompt``, ``prompt_no_outputs``, ...), a message and details."""

    type: str
    message: str
    details: str = ""
    extra_info: dict[str, Any] = {}


class ComfyError(msgspec.Struct, kw_only=True):
    """ComfyUI's 400 answer to ``POST /prompt``: the error and the errors of each node."""

    error: ComfyErrorDetail
    node_errors: dict[str, Any] = {}


class ComfyPromptResult(msgspec.Struct, kw_only=True):
    """The prompt is queued (not run yet)."""

    prompt_id: str
    number: int
    node_errors: dict[str, Any]


class ComfyExecInfo(msgspec.Struct, kw_only=True):
    """Prompts queued or running."""

    queue_remaining: int


class ComfyPromptInfo(msgspec.Struct, kw_only=True):
    """``GET /prompt``."""

    exec_info: ComfyExecInfo


class ComfyHistoryQuery(Checked, kw_only=True, forbid_unknown_fields=True):
    """``max_items``: the newest N entries; ``offset``: skip K entries from the oldest."""

    max_items: Annotated[int, Meta(ge=1, le=10_000)] | None = None
    offset: Annotated[int, Meta(ge=-1, le=10_000_000)] | None = None
    token: Token | None = None


class ComfyHistoryStatus(msgspec.Struct, kw_only=True):
    """How a prompt ended, and its execution messages."""

    status_str: str
    completed: bool
    messages: list[list[Any]]


class ComfyHistoryEntry(msgspec.Struct, kw_only=True):
    """One finished prompt: the queue item, node id -> UI outputs, status, meta."""

    prompt: list[Any]
    outputs: dict[str, dict[str, list[Any]]]
    status: ComfyHistoryStatus
    meta: dict[str, Any]



class ComfyQueue(msgspec.Struct, kw_only=True):
    """Items are ``[number, prompt_id, prompt, extra_data, outputs_to_execute]``."""

    queue_running: list[list[Any]]
    queue_pending: list[list[Any]]


class ComfyQueueBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``delete``: pending prompt ids to remove; ``clear``: remove all of yours that are pending."""

    delete: Annotated[list[PromptId], Meta(max_length=1000)] | None = None
    clear: bool = False


class ComfyInterruptBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Interrupt only this prompt if it runs (otherwise: your running prompt)."""

    prompt_id: PromptId | None = None


class ComfyViewQuery(Checked, kw_only=True, forbid_unknown_fields=True):
    """An output file: ``subfolder`` is the prompt id outputs are listed under."""

    filename: Annotated[str, Meta(max_length=255)] | None = None
    subfolder: Annotated[str, Meta(max_length=255)] = ""
    type: Annotated[str, Meta(max_length=20)] = "output"
    preview: Annotated[str, Meta(max_length=40)] | None = None
    channel: Annotated[str, Meta(max_length=10)] | None = None
    rand: Annotated[str, Meta(max_length=40)] | None = None
    token: Token | None = None


class ComfyWsQuery(Checked, kw_only=True, forbid_unknown_fields=True):
    """The socket's client id (any string; a hex uuid by convention) and optionally the token."""

    clientId: Annotated[str, Meta(max_length=128)] | None = None  # noqa: N815 -- ComfyUI's name
    token: Token | None = None


class ComfySystemStats(msgspec.Struct, kw_only=True):
    """``system`` (versions, RAM, argv) and ``devices`` (GPUs with VRAM)."""

    system: dict[str, Any]
    devices: list[dict[str, Any]]


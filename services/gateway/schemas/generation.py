"""Generation and template request and response types (muses, gallery and per-user usage: library.py).

The body of ``POST /api/v1/generations`` carries a template's parameters as top-level fields
(``{"template": "txt2img", "prompt": "...", "seed": 7}``). Its Struct is built from the
generation service's templates, so every parameter any template takes is a documented field
and anything else is refused; which parameters a given template accepts, and their limits,
the generation service checks (its message names the template and the parameter).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from services.gateway.schemas.base import Checked, Id, Text
from services.generation import templates as gen_templates

__all__ = [
    "Cursor", "Estimate", "EstimateBody", "Generation", "GenerationBody", "GenerationCreated", "GenerationError",
    "GenerationMilestone", "GenerationPage", "GenerationProgress", "GenerationWaiting", "GenerationsQuery", "JobStatus", "Lora", "OutputRef",
    "TemplateInfo", "TemplateList", "TemplateParam", "WebhookState",
]

_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
JobStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
Cursor = Annotated[str, Meta(pattern=r"^[0-9]{1,19}(\.[0-9]{1,6})?$", description="a cursor this API returned")]
IdempotencyKey = Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^[!-~ ]+$")]


class TextBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of bodies with free text (prompts): line breaks and tabs allowed, other control characters not."""

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if type(value) is str and _CONTROL_BUT_LINES.search(value):
                raise ValueError(f"{name} must not contain control characters")


# --- generations ---------------------------------------------------------------------------

_PARAM_TYPES: dict[str, Any] = {"string": Annotated[str, Meta(max_length=10_000)], "int": int, "float": float,
                                "checkpoint": Annotated[str, Meta(min_length=1, max_length=256)],
                                "image": Annotated[str, Meta(min_length=1, max_length=512)]}


def _template_params() -> list[tuple[str, Any, Any]]:
    """One optional field per template parameter (the union over templates), documented with its limits."""
    seen: dict[str, list[tuple[str, gen_templates.Param]]] = {}
    for template in gen_templates.TEMPLATES.values():
        for name, param in template.params.items():
            seen.setdefault(name, []).append((template.name, param))
    fields = []
    for name, uses in seen.items():
        param = uses[0][1]
        if param.type == "choice" and param.choices:
            kind: Any = Literal[tuple(gen_templates.CHOICES[param.choices])]
        else:
            kind = _PARAM_TYPES[param.type]
        notes = []
        for template_name, p in uses:
            limits = [f"{k} {getattr(p, k):g}" for k in ("min", "max", "multiple_of") if getattr(p, k) is not None]
            notes.append(template_name + (f" ({', '.join(limits)})" if limits else ""))
        text = f"{param.description} " if param.description else ""
        if param.type == "image":
            text += "An output id (or object name) of one of your outputs. "
        described = Annotated[kind, Meta(description=f"{text}Template parameter of: {'; '.join(notes)}.")]
        fields.append((name, described | None, None))
    return fields


TEMPLATE_PARAMS = tuple(name for name, _, _ in _template_params())
_TemplateName = Literal[tuple(gen_templates.TEMPLATES)]  # type: ignore[valid-type]
_Preset = Literal[tuple(dict.fromkeys(p for kind in gen_templates.PRESETS.values() for p in kind))]  # type: ignore[valid-type]
_BASE_FIELDS: list[tuple[str, Any, Any]] = [
    ("template", Annotated[_TemplateName, Meta(description="A template (GET /api/v1/templates); its parameters "
                                                           "are top-level fields.")] | None, None),
    ("workflow", Annotated[dict[str, Any], Meta(description="Your own ComfyUI API-format workflow, instead of a "
                                                            "template.")] | None, None),
    ("preset", _Preset | None, None),
    ("muse_id", Id | None, None),
    ("muse_variation", Text | None, None),
]
_SUBMIT_FIELDS: list[tuple[str, Any, Any]] = [
    ("idempotency_key", Annotated[IdempotencyKey, Meta(description="A retry with the same key returns the same "
                                                                   "generation (or send Idempotency-Key).")] | None,
     None),
    ("webhook_url", Annotated[str, Meta(max_length=2000, description="Receives generation.completed / .failed, "
                                                                      "signed.")] | None, None),
]

GenerationBody: type[TextBody] = msgspec.defstruct(  # type: ignore[assignment]
    "GenerationBody", _BASE_FIELDS + _SUBMIT_FIELDS + _template_params(), bases=(TextBody,), kw_only=True,
    forbid_unknown_fields=True, module=__name__)
GenerationBody.__doc__ = ("A generation: a template with its parameters as top-level fields, or your own "
                          "API-format workflow.")
EstimateBody: type[TextBody] = msgspec.defstruct(  # type: ignore[assignment]
    "EstimateBody", _BASE_FIELDS + _template_params(), bases=(TextBody,), kw_only=True, forbid_unknown_fields=True,
    module=__name__)
EstimateBody.__doc__ = "What a generation with these fields would cost (nothing is queued)."


class OutputRef(msgspec.Struct, kw_only=True):
    """One stored output: download it from ``url``."""

    id: str
    url: str
    filename: str
    content_type: str
    size: int
    sha256: str
    node_id: str = ""


class GenerationWaiting(msgspec.Struct, kw_only=True):
    """Why a generation is not producing yet (behind_jobs, no_instance, renting_instance, instance_loading,
    instances_busy, starting, loading_model; safe_mode, pool_closed, cannot_rent, pool_problem: the pool rents
    nothing and says why, no expected wait) and for about how long."""

    reason: str
    message: str
    expected_wait_s: float | None = None
    jobs_ahead: int = 0


class GenerationProgress(msgspec.Struct, kw_only=True):
    """The latest step of a running generation (kind: started, executing, progress, cached)."""

    kind: str
    seq: int = 0
    attempt: int = 1
    node: str | None = None
    node_type: str | None = None
    step: int | None = None
    max: int | None = None


class GenerationError(msgspec.Struct, kw_only=True):
    """Why a generation failed (validation, execution_error, instance_lost, timeout, cancelled, interrupted)."""

    reason: str
    message: str
    node_errors: dict[str, Any] = {}
    node_id: str | None = None
    node_type: str | None = None


class WebhookState(msgspec.Struct, kw_only=True):
    """Where the generation's webhook stands: pending, delivered or abandoned."""

    url: str
    state: str
    attempts: int = 0
    last_error: str = ""
    next_attempt_at: datetime | None = None


class Lora(msgspec.Struct, kw_only=True):
    """A LoRA the generation's workflow applied, with its strengths."""

    name: str
    strength_model: float | None = None
    strength_clip: float | None = None


class GenerationMilestone(msgspec.Struct, kw_only=True):
    """One step of a generation, timed when it was recorded: queued, claimed (``detail``: the GPU), started,
    attempt_lost, cancel_requested, completed, failed, cancelled."""

    kind: str
    at: datetime
    detail: str = ""


class Generation(msgspec.Struct, kw_only=True):
    """A generation job; ``cost`` is the actual cost once it ended."""

    id: str
    user_id: str
    status: JobStatus
    template: str | None = None
    preset: str | None = None
    params: dict[str, Any] = {}
    checkpoint: str | None = None
    muse_id: str | None = None
    waiting: GenerationWaiting | None = None
    progress: GenerationProgress | None = None
    outputs: list[OutputRef] = []
    estimated_cost: float = 0.0
    expected_seconds: float = 0.0
    cost: float | None = None
    seconds: float | None = None
    error: GenerationError | None = None
    warnings: dict[str, Any] = {}
    attempts: int = 0
    cancel_requested: bool = False
    webhook: WebhookState | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    timeline: list[GenerationMilestone] = []
    loras: list[Lora] = []


class GenerationCreated(msgspec.Struct, kw_only=True):
    """A queued generation (``created`` false: the existing one of a repeated idempotency key)."""

    id: str
    created: bool
    status: JobStatus
    estimated_cost: float
    expected_seconds: float
    generation: Generation


class GenerationPage(msgspec.Struct, kw_only=True):
    """Generations, newest first; pass ``next`` as ``before`` for the next page (null: no more)."""

    items: list[Generation]
    next: str | None = None


class GenerationsQuery(Checked, kw_only=True, forbid_unknown_fields=True):
    """Your generations, newest first; ``user_id`` (admins) lists someone else's."""

    status: JobStatus | None = None
    limit: Annotated[int, Meta(ge=1, le=100)] = 20
    before: Cursor | None = None
    user_id: Id | None = None


class Estimate(msgspec.Struct, kw_only=True):
    """Expected GPU seconds x the pool's $/h."""

    estimated_cost: float
    expected_seconds: float
    dph: float
    work_units: float
    checkpoint: str | None = None
    preset: str | None = None


class TemplateParam(msgspec.Struct, kw_only=True):
    """One parameter of a template, with its limits."""

    name: str
    type: str
    required: bool = False
    description: str = ""
    default: Any = None
    min: float | None = None
    max: float | None = None
    multiple_of: int | None = None
    max_length: int | None = None
    choices: list[str] | None = None


class TemplateInfo(msgspec.Struct, kw_only=True):
    """A template: parameters and presets (steps and size per quality level)."""

    name: str
    description: str
    kind: str
    params: list[TemplateParam]
    presets: dict[str, dict[str, int]]
    default_preset: str


class TemplateList(msgspec.Struct, kw_only=True):
    """Templates, and the checkpoints the pool's instances have."""

    templates: list[TemplateInfo]
    checkpoints: list[str]
    presets: dict[str, dict[str, dict[str, int]]]
    default_preset: str

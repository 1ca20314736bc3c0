"""Built-in templates: ComfyUI API-format workflows in ``templates/*.json`` with parameters bound by name.

Each template file holds ``workflow`` (runnable as is in ComfyUI) and ``params``: for each
parameter its type, limits, default and ``bind``, the ``[node id, input name]`` pairs it sets.
Presets (low/medium/high/ultra) give steps and size unless the request sets them.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, NamedTuple

import msgspec

from libs.contracts import host_files
from libs.events.generation import MuseSpec

from . import workflow as wf
from .domain import DomainError
from .muse import MAX_RENDERED, render

TEMPLATE_DIR = Path(__file__).with_name("templates")
SAMPLERS = ("euler", "euler_cfg_pp", "euler_ancestral", "heun", "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast",
            "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m_sde",
            "ddpm", "lcm", "ipndm", "deis", "ddim", "uni_pc", "uni_pc_bh2")
SCHEDULERS = ("simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
              "linear_quadratic", "kl_optimal")
CHOICES = {"samplers": SAMPLERS, "schedulers": SCHEDULERS}
PRESETS: dict[str, dict[str, dict[str, int]]] = {
    "image": {"low": {"steps": 15, "width": 512, "height": 512},
              "medium": {"steps": 25, "width": 768, "height": 768},
              "high": {"steps": 35, "width": 1024, "height": 1024},
              "ultra": {"steps": 50, "width": 1536, "height": 1536}},
    "video": {"low": {"steps": 12, "width": 256, "height": 256},
              "medium": {"steps": 20, "width": 384, "height": 384},
              "high": {"steps": 28, "width": 512, "height": 512},
              "ultra": {"steps": 40, "width": 768, "height": 768}},
}
DEFAULT_PRESET = "medium"


class Param(msgspec.Struct, frozen=True, kw_only=True):
    """One template parameter."""

    type: str  # string, int, float, choice, checkpoint, image
    bind: tuple[tuple[str, str], ...]
    required: bool = False
    default: Any = None
    min: float | None = None
    max: float | None = None
    multiple_of: int | None = None
    max_length: int | None = None
    choices: str | None = None
    description: str = ""


class Template(msgspec.Struct, frozen=True, kw_only=True):
    """A workflow with named parameters."""

    name: str
    description: str
    kind: str  # image | video
    params: dict[str, Param]
    workflow: dict[str, Any]
    outputs: tuple[str, ...]


class Bound(NamedTuple):
    """A template made concrete for one job."""

    prompt: dict[str, Any]
    params: dict[str, Any]  # every parameter's effective value
    checkpoint: str | None
    uploads: dict[str, str]  # ComfyUI input filename -> object name
    work_units: float


def load(directory: Path = TEMPLATE_DIR) -> dict[str, Template]:
    """Read and check every template file (a broken template fails at start-up, not per job)."""
    out: dict[str, Template] = {}
    for path in sorted(directory.glob("*.json")):
        template = msgspec.json.decode(path.read_bytes(), type=Template)
        wf.check(template.workflow)
        for name, param in template.params.items():
            for nid, field in param.bind:
                if field not in template.workflow.get(nid, {}).get("inputs", {}):
                    raise ValueError(f"{path.name}: parameter {name} binds missing input {nid}.{field}")
        out[template.name] = template
    return out


TEMPLATES = load()


def user_prefix(user_id: str) -> str:
    """Object names a user owns start with this."""
    return f"gen/{user_id}/"


def _value(name: str, p: Param, raw: Any) -> Any:
    def bad(msg: str) -> DomainError:
        return DomainError(f"params.{name}: {msg}", "VALIDATION_FAILED")

    if p.type in ("string", "checkpoint", "image", "choice"):
        if not isinstance(raw, str):
            raise bad("must be a string")
        if p.max_length is not None and len(raw) > p.max_length:
            raise bad(f"at most {p.max_length} characters")
        if p.type == "choice" and p.choices and raw not in CHOICES[p.choices]:
            raise bad(f"{raw!r} is not one of {', '.join(CHOICES[p.choices])}")
        if p.type in ("checkpoint", "image") and (not raw.strip() or ".." in raw):
            raise bad(f"{raw!r} is not a file name")
        return raw
    if p.type == "int":
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise bad("must be a whole number")
    elif p.type == "float":
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise bad("must be a number")
        raw = float(raw)
    if (p.min is not None and raw < p.min) or (p.max is not None and raw > p.max):
        raise bad(f"must be between {p.min:g} and {p.max:g}, got {raw}")
    if p.multiple_of and raw % p.multiple_of:
        raise bad(f"must be a multiple of {p.multiple_of}, got {raw}")
    return raw


def bind(template: Template, params: dict[str, Any], *, job_id: str, user_id: str, seed: int,
         preset: str | None = None, default_checkpoint: str | None = None, muse: MuseSpec | None = None,
         variation: str | None = None, input_token: str | None = None) -> Bound:
    """Validate ``params`` and set them into a copy of the template's workflow.

    An input image is placed on the instance under the job's own unguessable folder
    (``input_token``, random when not given): no other job can name it.
    """
    unknown = sorted(set(params) - set(template.params))
    if unknown:
        raise DomainError(f"unknown parameter(s) {', '.join(unknown)} for template {template.name}; "
                          f"it takes {', '.join(template.params)}", "VALIDATION_FAILED")
    presets = PRESETS[template.kind]
    chosen = preset or DEFAULT_PRESET
    if chosen not in presets:
        raise DomainError(f"unknown preset {chosen!r}; use {', '.join(presets)}", "VALIDATION_FAILED")
    values: dict[str, Any] = {}
    for name, p in template.params.items():
        if name in params and params[name] is not None:
            values[name] = _value(name, p, params[name])
        elif name in presets[chosen]:
            values[name] = presets[chosen][name]
        elif p.default is not None:
            values[name] = p.default
    if "seed" in template.params and "seed" not in values:
        values["seed"] = seed
    if muse is not None:
        limit = template.params["prompt"].max_length if "prompt" in template.params else None
        positive, negative = render(muse, str(values.get("prompt", "")), variation, limit=limit or MAX_RENDERED)
        values["prompt"] = positive
        values["negative_prompt"] = ", ".join(x for x in (negative, values.get("negative_prompt", "")) if x)
        if "checkpoint" not in values and muse.checkpoint:
            values["checkpoint"] = muse.checkpoint
        if "image" in template.params and "image" not in values and muse.reference_images:
            values["image"] = muse.reference_images[0]
    elif variation:
        raise DomainError("a muse variation needs a muse", "VALIDATION_FAILED")
    if "checkpoint" in template.params and "checkpoint" not in values and default_checkpoint:
        values["checkpoint"] = default_checkpoint
    missing = [n for n, p in template.params.items() if n not in values and (p.required or p.type == "image")]
    if "prompt" in values and not str(values["prompt"]).strip():
        missing.append("prompt")
    if missing:
        raise DomainError(f"missing parameter(s): {', '.join(dict.fromkeys(missing))}", "VALIDATION_FAILED")
    uploads: dict[str, str] = {}
    if "image" in values:
        obj = values["image"]
        if not obj.startswith(user_prefix(user_id)):
            raise DomainError(f"params.image: {obj!r} is not one of your objects", "NOT_FOUND")
        uploads[host_files.input_name(input_token or host_files.new_token(), "image.png")] = obj
    prompt = copy.deepcopy(template.workflow)
    for name, value in values.items():
        bound = next(iter(uploads)) if name == "image" else value
        for nid, field in template.params[name].bind:
            prompt[nid]["inputs"][field] = bound
    prompt = wf.set_output_prefix(prompt, f"stoker/{job_id}", list(template.outputs))
    checkpoint = values.get("checkpoint") or wf.checkpoint_of(prompt)
    size = values.get("width", 512) * values.get("height", 512) / (512 * 512)
    units = values.get("steps", 20) * max(size, 0.25) * values.get("batch_size", 1) * values.get("frames", 1)
    return Bound(prompt, values, checkpoint, uploads, float(units))


def describe(template: Template) -> dict[str, Any]:
    """A template as the API lists it: parameters with limits, presets."""
    params = []
    for name, p in template.params.items():
        item: dict[str, Any] = {"name": name, "type": p.type, "required": p.required or p.type == "image",
                                "description": p.description}
        for key in ("default", "min", "max", "multiple_of", "max_length"):
            if getattr(p, key) is not None:
                item[key] = getattr(p, key)
        if p.choices:
            item["choices"] = list(CHOICES[p.choices])
        params.append(item)
    return {"name": template.name, "description": template.description, "kind": template.kind,
            "params": params, "presets": PRESETS[template.kind], "default_preset": DEFAULT_PRESET}

"""ComfyUI API-format workflows: the checks a workflow passes before it is queued (pure).

A workflow maps node ids to ``{"class_type": str, "inputs": {...}}``; an input that is a
``[node_id, output_index]`` pair is a link. ComfyUI validates types and values on the host;
here we refuse what can never run anywhere (bad shape, dangling links, cycles, no output)
with per-node messages in ComfyUI's ``node_errors`` shape.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

MAX_NODES = 500
MAX_BYTES = 512 * 1024  # events carry the workflow; NATS messages are 1 MiB by default
# Output nodes we know; any class named Save*/Preview* is taken as an output node as well.
OUTPUT_CLASSES = frozenset({"SaveImage", "PreviewImage", "SaveAnimatedPNG", "SaveAnimatedWEBP", "SaveWEBM",
                            "SaveVideo", "SaveImageWebsocket", "PreviewAny", "SaveAudio", "VHS_VideoCombine"})
LOADER_CLASSES = frozenset({"CheckpointLoaderSimple", "CheckpointLoader", "UNETLoader", "LoraLoader",
                            "VAELoader", "CLIPLoader", "DualCLIPLoader", "ControlNetLoader", "UpscaleModelLoader",
                            "unCLIPCheckpointLoader", "ImageOnlyCheckpointLoader"})

# Inputs that read a file from the instance's input, output or temp folder (core ComfyUI and
# well-known custom nodes). A job may load only the files it brought (see ``check_files``).
FILE_INPUTS: dict[str, tuple[str, ...]] = {
    "LoadImage": ("image",), "LoadImageMask": ("image",), "LoadImageOutput": ("image",), "LoadVideo": ("file",),
    "Load3D": ("model_file",), "Load3DAnimation": ("model_file",), "LoadLatent": ("latent",),
    "LoadAudio": ("audio",), "LoadImageSetFromFolderNode": ("folder",), "LoadImageTextSetFromFolderNode": ("folder",),
    "VHS_LoadVideo": ("video",), "VHS_LoadVideoPath": ("video",), "VHS_LoadImages": ("directory",),
    "VHS_LoadImagesPath": ("directory",), "VHS_LoadAudio": ("audio_file",), "VHS_LoadAudioUpload": ("audio",),
    "LoadImagesFromDirectory": ("directory",), "Image Load": ("image_path",),
}
_ANNOTATION = re.compile(r"\s*\[(input|output|temp)\]\s*$")


class WorkflowError(Exception):
    """The workflow cannot run; ``node_errors`` says where, in ComfyUI's shape."""

    def __init__(self, message: str, node_errors: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.node_errors = node_errors or {}


def is_output(class_type: str) -> bool:
    """Whether nodes of this class produce outputs ComfyUI runs the graph for."""
    return class_type in OUTPUT_CLASSES or class_type.startswith(("Save", "Preview"))


def is_link(value: Any) -> bool:
    """``[node_id, output_index]``."""
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], int) and not isinstance(value[1], bool))


def check(workflow: Any, allowed: frozenset[str] | None = None) -> dict[str, Any]:
    """Validate a bring-your-own workflow; returns it, or raises WorkflowError saying what is wrong.

    ``allowed``: when given, the only node classes a workflow may use.
    """
    if not isinstance(workflow, dict) or not workflow:
        raise WorkflowError("the workflow must be a non-empty JSON object of nodes in ComfyUI's API format "
                            "(in ComfyUI: Workflow > Export (API))")
    if len(workflow) > MAX_NODES:
        raise WorkflowError(f"the workflow has {len(workflow)} nodes; at most {MAX_NODES} are accepted")
    if len(msgspec.json.encode(workflow)) > MAX_BYTES:
        raise WorkflowError(f"the workflow is larger than {MAX_BYTES // 1024} KiB")
    if "nodes" in workflow and "links" in workflow:
        raise WorkflowError("this is a UI-format workflow; export it with Workflow > Export (API)")
    errors: dict[str, Any] = {}
    for nid, node in workflow.items():
        problems = _node_problems(workflow, nid, node)
        if problems:
            class_type = node.get("class_type") if isinstance(node, dict) else None
            errors[nid] = {"errors": [{"type": kind, "message": msg, "details": details, "extra_info": {}}
                                      for kind, msg, details in problems],
                           "dependent_outputs": [], "class_type": class_type if isinstance(class_type, str) else ""}
        elif allowed is not None and node.get("class_type") not in allowed:
            errors[nid] = {"errors": [{"type": "node_not_allowed", "message": "Node class not allowed here",
                                       "details": f"{node.get('class_type')} is not in STOKER_GEN_BYO_NODES",
                                       "extra_info": {}}],
                           "dependent_outputs": [], "class_type": node.get("class_type")}
    if errors:
        raise WorkflowError(_summary(errors), errors)
    cycle = _find_cycle(workflow)
    if cycle:
        raise WorkflowError(f"the workflow has a cycle through nodes {' -> '.join(cycle)}")
    if not any(is_output(node["class_type"]) for node in workflow.values()):
        raise WorkflowError("the workflow has no output node (such as SaveImage): nothing would be kept")
    return workflow


def _node_problems(workflow: dict[str, Any], nid: str, node: Any) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    if not isinstance(nid, str) or not 1 <= len(nid) <= 64:
        out.append(("invalid_node_id", "Node ids are strings of 1-64 characters", repr(nid)))
    if not isinstance(node, dict):
        return [*out, ("invalid_node", "A node must be an object with class_type and inputs", "")]
    class_type = node.get("class_type")
    if not isinstance(class_type, str) or not class_type.strip():
        out.append(("missing_class_type", "Node has no class_type", ""))
    inputs = node.get("inputs", {})
    if not isinstance(inputs, dict):
        return [*out, ("invalid_inputs", "inputs must be an object", "")]
    for name, value in inputs.items():
        if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int):
            if value[0] not in workflow:
                out.append(("bad_linked_input", "Linked node does not exist",
                            f"{name}: links to node {value[0]!r}, which is not in the workflow"))
            elif value[1] < 0:
                out.append(("bad_linked_input", "Negative output index", f"{name}: output {value[1]}"))
    return out


def _summary(errors: dict[str, Any]) -> str:
    lines = []
    for nid, entry in errors.items():
        for err in entry["errors"]:
            where = f"node {nid}" + (f" ({entry['class_type']})" if entry["class_type"] else "")
            lines.append(f"{where}: {err['message']}" + (f" - {err['details']}" if err["details"] else ""))
    return "invalid workflow: " + "; ".join(lines)


def _find_cycle(workflow: dict[str, Any]) -> list[str]:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(nid: str) -> list[str]:
        state[nid] = 1
        stack.append(nid)
        for value in workflow[nid].get("inputs", {}).values():
            if is_link(value) and value[0] in workflow:
                dep = value[0]
                if state.get(dep) == 1:
                    return stack[stack.index(dep):] + [dep]
                if dep not in state:
                    found = visit(dep)
                    if found:
                        return found
        stack.pop()
        state[nid] = 2
        return []

    for nid in workflow:
        if nid not in state:
            found = visit(nid)
            if found:
                return found
    return []


def _reads_files(class_type: str, name: str) -> bool:
    return name in FILE_INPUTS.get(class_type, ()) or (
        class_type.startswith(("Load", "VHS_Load")) and name in ("image", "file", "video", "audio", "folder",
                                                                 "directory", "path", "image_path", "latent"))


def _file_problem(class_type: str, name: str, value: str, own: frozenset[str]) -> str | None:
    """Why ``value`` of input ``name`` may not be read by this job (None: it may)."""
    match = _ANNOTATION.search(value)
    plain = value[:match.start()] if match else value
    if match and match.group(1) != "input":
        return f"{name}: {value!r} names a file in the instance's {match.group(1)} folder"
    if plain in own:
        return None
    if _reads_files(class_type, name):
        return (f"{name}: {value!r} is not a file this job brought (a job can load only its own inputs: "
                "pass an image parameter of a template)")
    if match:
        return f"{name}: {value!r} names a file on the instance"
    return None  # other inputs (a save node's "../x" prefix) are ComfyUI's to refuse


def check_files(workflow: dict[str, Any], own: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Refuse file reads of anything but ``own`` (the job's placed inputs): another tenant's inputs,
    outputs or temp files on a shared instance, annotated (``name [output]``) or ``..`` paths.

    Returns the workflow, or raises WorkflowError with per-node errors.
    """
    errors: dict[str, Any] = {}
    for nid, node in workflow.items():
        class_type = str(node.get("class_type", ""))
        problems = [p for name, value in (node.get("inputs") or {}).items() if isinstance(value, str)
                    and (p := _file_problem(class_type, str(name), value, own)) is not None]
        if problems:
            errors[nid] = {"errors": [{"type": "file_not_allowed", "message": "File not allowed", "details": p,
                                       "extra_info": {}} for p in problems],
                           "dependent_outputs": [], "class_type": class_type}
    if errors:
        raise WorkflowError(_summary(errors), errors)
    return workflow


def checkpoint_of(workflow: dict[str, Any]) -> str | None:
    """The checkpoint the workflow loads (for routing), if any."""
    for node in workflow.values():
        name = node.get("inputs", {}).get("ckpt_name")
        if isinstance(name, str) and name:
            return name
    return None


def loras_of(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    """The LoRAs a workflow applies: name and strengths, in node order (LoraLoader and its model-only kind)."""
    found = []
    for node in workflow.values():
        inputs = node.get("inputs", {}) if isinstance(node, dict) else {}
        name = inputs.get("lora_name")
        if isinstance(name, str) and name and str(node.get("class_type", "")).startswith("Lora"):
            strengths = {k: v for k in ("strength_model", "strength_clip") if isinstance(v := inputs.get(k), int | float)}
            found.append({"name": name, **strengths})
    return found


def work_units(workflow: dict[str, Any]) -> float:
    """Rough size of the work: sampler steps x megapixel-ish latent area x batch (at least 1)."""
    area = 0.0
    for node in workflow.values():
        inputs = node.get("inputs", {})
        w, h, b = inputs.get("width"), inputs.get("height"), inputs.get("batch_size", 1)
        if node.get("class_type", "").endswith("LatentImage") and all(isinstance(x, int) for x in (w, h, b)):
            area += w * h * b / (512 * 512)
    steps = sum(int(n.get("inputs", {}).get("steps", 0)) for n in workflow.values()
                if isinstance(n.get("inputs", {}).get("steps"), int))
    return max(1.0, steps * max(area, 1.0))


JOB_INPUT = "stoker_job"


def for_job(workflow: dict[str, Any], job_id: str) -> dict[str, Any]:
    """A copy whose output nodes carry the job id as an extra input (ComfyUI ignores inputs a node does not
    declare, but keys its cache on every input): an identical prompt of another job runs its output nodes
    again instead of answering with files a previous job wrote and that were removed with it."""
    return {nid: {**node, "inputs": {**node.get("inputs", {}), JOB_INPUT: job_id}}
            if is_output(str(node.get("class_type", ""))) else node for nid, node in workflow.items()}


def set_output_prefix(workflow: dict[str, Any], prefix: str, nodes: list[str]) -> dict[str, Any]:
    """A copy of ``workflow`` whose listed save nodes write under ``prefix``."""
    out = {nid: {**node, "inputs": dict(node.get("inputs", {}))} for nid, node in workflow.items()}
    for nid in nodes:
        if "filename_prefix" in out[nid]["inputs"]:
            out[nid]["inputs"]["filename_prefix"] = prefix
    return out

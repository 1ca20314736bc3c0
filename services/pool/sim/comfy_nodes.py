"""The node classes a simulated ComfyUI host offers: their object_info and what they compute."""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.pool.sim import images
from services.pool.sim.comfy_files import resolve
from services.pool.sim.config import SimConfig
from services.pool.sim.images import Handle, Latent, Picture
from services.pool.sim.png import PngError, decode_png, encode_apng, encode_png

ANY = "*"
SAMPLERS = ["euler", "euler_cfg_pp", "euler_ancestral", "heun", "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast",
            "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m_sde",
            "ddpm", "lcm", "ipndm", "deis", "ddim", "uni_pc", "uni_pc_bh2"]
SCHEDULERS = ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
              "linear_quadratic", "kl_optimal"]
OUTPUT_DIR = "/ComfyUI/output"


class NodeFailure(Exception):
    """A runtime error inside a node (reported as ``execution_error``)."""

    def __init__(self, message: str, exception_type: str = "Exception") -> None:
        super().__init__(message)
        self.exception_type = exception_type


class NodeEnv(Protocol):
    """What nodes may see of their host: model files, uploaded inputs and the file store."""

    def files(self, folder: str) -> list[str]:
        """Model files of ``folder`` available now."""
        ...

    def input_files(self) -> list[str]:
        """Uploaded input images."""
        ...

    def read_file(self, kind: str, subfolder: str, filename: str) -> bytes | None:
        """Stored file contents, if any."""
        ...

    def save_file(self, kind: str, subfolder: str, filename: str, data: bytes) -> None:
        """Store a file (output/temp/input)."""
        ...

    def next_counter(self, kind: str, subfolder: str, prefix: str) -> int:
        """SaveImage counter: one more than the highest existing for this prefix."""
        ...

    def random_letters(self, n: int) -> str:
        """Random lowercase letters for temp file names."""
        ...


@dataclass(frozen=True)
class RunInfo:
    """Per-execution facts a node may embed in its outputs."""

    node_id: str
    prompt: dict[str, Any]
    extra_pnginfo: dict[str, Any] = field(default_factory=dict)


Result = tuple[tuple[Any, ...], dict[str, Any] | None]


@dataclass(frozen=True)
class NodeDef:
    """One node class."""

    name: str
    category: str
    inputs: Callable[[NodeEnv], dict[str, dict[str, Any]]]  # required/optional: name -> [type, options]
    run: Callable[[NodeEnv, dict[str, Any], RunInfo], Result]
    outputs: tuple[str, ...] = ()
    output_names: tuple[str, ...] | None = None
    output_node: bool = False
    description: str = ""
    python_module: str = "nodes"
    display_name: str | None = None
    steps: Callable[[dict[str, Any]], int] | None = None  # nodes that report progress
    cost: Callable[[dict[str, Any], SimConfig], float] | None = None  # seconds of work, default node_seconds
    validate: Callable[[NodeEnv, dict[str, Any]], bool | str] | None = None
    validate_inputs: tuple[str, ...] = ()  # inputs covered by ``validate`` (skip min/max/list checks)

    def seconds(self, inputs: dict[str, Any], cfg: SimConfig) -> float:
        """Simulated duration of this node without progress steps."""
        return self.cost(inputs, cfg) if self.cost else cfg.node_seconds

    def info(self, env: NodeEnv) -> dict[str, Any]:
        """This class's entry in ``/object_info``."""
        spec = self.inputs(env)
        return {
            "input": spec, "input_order": {k: list(v) for k, v in spec.items() if k != "hidden"},
            "output": list(self.outputs), "output_is_list": [False] * len(self.outputs),
            "output_name": list(self.output_names or self.outputs), "name": self.name,
            "display_name": self.display_name or self.name, "description": self.description,
            "python_module": self.python_module, "category": self.category, "output_node": self.output_node,
        }


def _int(default: int, lo: int, hi: int, **extra: Any) -> list[Any]:
    return ["INT", {"default": default, "min": lo, "max": hi, **extra}]


def _float(default: float, lo: float, hi: float, step: float = 0.01, **extra: Any) -> list[Any]:
    return ["FLOAT", {"default": default, "min": lo, "max": hi, "step": step, **extra}]


def _text(multiline: bool = False, default: str = "", **extra: Any) -> list[Any]:
    return ["STRING", {"multiline": multiline, "default": default, **extra}]


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, default=repr, sort_keys=True).encode()).hexdigest()


def _png_text(info: RunInfo) -> dict[str, str]:
    text = {"prompt": json.dumps(info.prompt)}
    for k, v in info.extra_pnginfo.items():
        text[k] = json.dumps(v)
    return text


def _split_prefix(prefix: str, kind: str) -> tuple[str, str]:
    norm = posixpath.normpath(prefix)
    subfolder, filename = posixpath.dirname(norm), posixpath.basename(norm)
    base = OUTPUT_DIR if kind == "output" else f"/ComfyUI/{kind}"
    full = posixpath.normpath(posixpath.join(base, subfolder))
    if posixpath.commonpath((base, full)) != base:
        raise NodeFailure("**** ERROR: Saving image outside the output folder is not allowed."
                          f"\n full_output_folder: {full}\n         output_dir: {base}"
                          f"\n         commonpath: {posixpath.commonpath((base, full))}")
    return ("" if subfolder == "." else subfolder), filename


def save_pictures(env: NodeEnv, pic: Picture, prefix: str, kind: str, info: RunInfo) -> Result:
    """SaveImage/PreviewImage: one PNG per frame named ``{prefix}_{counter:05}_.png``."""
    subfolder, filename = _split_prefix(prefix, kind)
    counter = env.next_counter(kind, subfolder, filename)
    results = []
    for batch_num, frame in enumerate(pic.frames):
        name = f"{filename.replace('%batch_num%', str(batch_num))}_{counter:05}_.png"
        env.save_file(kind, subfolder, name, encode_png(pic.width, pic.height, frame, _png_text(info)))
        results.append({"filename": name, "subfolder": subfolder, "type": kind})
        counter += 1
    return (), {"images": results}


def _save_image(env: NodeEnv, i: dict[str, Any], info: RunInfo) -> Result:
    return save_pictures(env, i["images"], i["filename_prefix"], "output", info)


def _preview_image(env: NodeEnv, i: dict[str, Any], info: RunInfo) -> Result:
    return save_pictures(env, i["images"], "ComfyUI_temp_" + env.random_letters(5), "temp", info)


def _save_apng(env: NodeEnv, i: dict[str, Any], info: RunInfo) -> Result:
    pic: Picture = i["images"]
    subfolder, filename = _split_prefix(i["filename_prefix"], "output")
    counter = env.next_counter("output", subfolder, filename)
    name = f"{filename}_{counter:05}_.png"
    data = encode_apng(pic.width, pic.height, pic.frames, float(i["fps"]), _png_text(info), int(i["compress_level"]))
    env.save_file("output", subfolder, name, data)
    return (), {"images": [{"filename": name, "subfolder": subfolder, "type": "output"}], "animated": [True]}


def _read_annotated(env: NodeEnv, name: str) -> bytes | None:
    """The file an image input names, resolved as ComfyUI does (``[output]`` annotations, ``..``)."""
    where = resolve(name)
    return env.read_file(*where) if where is not None else None


def _load_image(env: NodeEnv, i: dict[str, Any], info: RunInfo) -> Result:
    name = str(i["image"])
    data = _read_annotated(env, name)
    if data is None:
        raise NodeFailure(f"[Errno 2] No such file or directory: '/ComfyUI/input/{name}'", "FileNotFoundError")
    try:
        w, h, rgb = decode_png(data)
    except PngError as exc:
        raise NodeFailure(f"cannot identify image file '/ComfyUI/input/{name}'",
                          "PIL.UnidentifiedImageError") from exc
    return (Picture(w, h, (rgb,)), Handle("MASK", _key("mask", name))), None


def _validate_load_image(env: NodeEnv, i: dict[str, Any]) -> bool | str:
    name = str(i.get("image"))
    return True if _read_annotated(env, name) is not None else f"Invalid image file: {name}"


def _checkpoint(env: NodeEnv, i: dict[str, Any], info: RunInfo) -> Result:
    k = i["ckpt_name"]
    return (Handle("MODEL", _key("model", k)), Handle("CLIP", _key("clip", k)), Handle("VAE", _key("vae", k))), None


def _lora(env: NodeEnv, i: dict[str, Any], info: RunInfo) -> Result:
    mk = _key(i["model"].key, i["lora_name"], i["strength_model"])
    ck = _key(i["clip"].key, i["lora_name"], i["strength_clip"])
    return (Handle("MODEL", mk), Handle("CLIP", ck)), None


def _sampler_cost(i: dict[str, Any], cfg: SimConfig) -> float:
    lat: Latent = i["latent_image"]
    return cfg.step_seconds * max(1.0, lat.batch * lat.width * lat.height / 1048576)


def _blur_cost(i: dict[str, Any], cfg: SimConfig) -> float:
    pic: Picture = i["image"]
    per_frame = max(1.0, pic.width * pic.height / 262144) * int(i["blur_radius"]) / 31
    return cfg.node_seconds + cfg.step_seconds * len(pic.frames) * per_frame


def _ksampler(env: NodeEnv, i: dict[str, Any], info: RunInfo) -> Result:
    lat: Latent = i["latent_image"]
    key = _key(i["model"].key, i["positive"].key, i["negative"].key, i["seed"], i["steps"], i["cfg"],
               i["sampler_name"], i["scheduler"], i["denoise"], lat.key)
    return (Latent(lat.width, lat.height, lat.batch, key),), None


def _preview_any(env: NodeEnv, i: dict[str, Any], info: RunInfo) -> Result:
    value = i["source"]
    if isinstance(value, str):
        text = value
    elif isinstance(value, (int, float, bool)):
        text = str(value)
    else:
        try:
            text = json.dumps(value)
        except TypeError:
            text = "source exists, but could not be serialized."
    return (), {"text": [text]}


def _models(folder: str, tooltip: str) -> Callable[[NodeEnv], list[Any]]:
    return lambda env: [env.files(folder), {"tooltip": tooltip}]


_NODES: list[NodeDef] = [
    NodeDef("CheckpointLoaderSimple", "loaders",
            lambda env: {"required": {"ckpt_name": _models("checkpoints", "The name of the checkpoint (model) to load.")(env)}},
            _checkpoint, ("MODEL", "CLIP", "VAE"), display_name="Load Checkpoint",
            description="Loads a diffusion model checkpoint, diffusion models are used to denoise latents.",
            cost=lambda i, cfg: cfg.model_load_seconds),
    NodeDef("LoraLoader", "loaders",
            lambda env: {"required": {"model": ["MODEL", {}], "clip": ["CLIP", {}],
                                      "lora_name": _models("loras", "The name of the LoRA.")(env),
                                      "strength_model": _float(1.0, -100.0, 100.0),
                                      "strength_clip": _float(1.0, -100.0, 100.0)}},
            _lora, ("MODEL", "CLIP"), display_name="Load LoRA"),
    NodeDef("CLIPTextEncode", "conditioning",
            lambda env: {"required": {"text": _text(True, dynamicPrompts=True), "clip": ["CLIP", {}]}},
            lambda env, i, info: ((Handle("CONDITIONING", _key(i["clip"].key, i["text"])),), None),
            ("CONDITIONING",), display_name="CLIP Text Encode (Prompt)"),
    NodeDef("EmptyLatentImage", "latent",
            lambda env: {"required": {"width": _int(512, 16, 16384, step=8), "height": _int(512, 16, 16384, step=8),
                                      "batch_size": _int(1, 1, 4096)}},
            lambda env, i, info: ((Latent(i["width"], i["height"], i["batch_size"],
                                          _key("latent", i["width"], i["height"], i["batch_size"])),), None),
            ("LATENT",), display_name="Empty Latent Image"),
    NodeDef("KSampler", "sampling",
            lambda env: {"required": {
                "model": ["MODEL", {}], "seed": _int(0, 0, 0xFFFFFFFFFFFFFFFF, control_after_generate=True),
                "steps": _int(20, 1, 10000), "cfg": _float(8.0, 0.0, 100.0, 0.1, round=0.01),
                "sampler_name": [SAMPLERS, {}], "scheduler": [SCHEDULERS, {}],
                "positive": ["CONDITIONING", {}], "negative": ["CONDITIONING", {}],
                "latent_image": ["LATENT", {}], "denoise": _float(1.0, 0.0, 1.0)}},
            _ksampler, ("LATENT",), steps=lambda i: int(i["steps"]), cost=_sampler_cost),
    NodeDef("VAEDecode", "latent",
            lambda env: {"required": {"samples": ["LATENT", {}], "vae": ["VAE", {}]}},
            lambda env, i, info: ((images.pattern(i["samples"].width, i["samples"].height, i["samples"].batch,
                                                  _key(i["samples"].key, i["vae"].key)),), None),
            ("IMAGE",), display_name="VAE Decode"),
    NodeDef("VAEEncode", "latent",
            lambda env: {"required": {"pixels": ["IMAGE", {}], "vae": ["VAE", {}]}},
            lambda env, i, info: ((Latent(i["pixels"].width, i["pixels"].height, len(i["pixels"].frames),
                                          _key("encoded", i["vae"].key,
                                               hashlib.sha256(b"".join(i["pixels"].frames)).hexdigest())),), None),
            ("LATENT",), display_name="VAE Encode"),
    NodeDef("EmptyImage", "image",
            lambda env: {"required": {"width": _int(512, 1, 16384, step=1), "height": _int(512, 1, 16384, step=1),
                                      "batch_size": _int(1, 1, 4096),
                                      "color": _int(0, 0, 0xFFFFFF, step=1, display="color")}},
            lambda env, i, info: ((images.solid(i["width"], i["height"], i["batch_size"], i["color"]),), None),
            ("IMAGE",)),
    NodeDef("ImageInvert", "image",
            lambda env: {"required": {"image": ["IMAGE", {}]}},
            lambda env, i, info: ((images.invert(i["image"]),), None), ("IMAGE",), display_name="Invert Image"),
    NodeDef("ImageBlur", "image/postprocessing",
            lambda env: {"required": {"image": ["IMAGE", {}], "blur_radius": _int(1, 1, 31, step=1),
                                      "sigma": _float(1.0, 0.1, 10.0, 0.1)}},
            lambda env, i, info: ((i["image"],), None), ("IMAGE",), display_name="Image Blur",
            python_module="comfy_extras.nodes_post_processing", cost=_blur_cost),
    NodeDef("LoadImage", "image",
            lambda env: {"required": {"image": [sorted(env.input_files()), {"image_upload": True}]}},
            _load_image, ("IMAGE", "MASK"), display_name="Load Image",
            validate=_validate_load_image, validate_inputs=("image",)),
    NodeDef("SaveImage", "image",
            lambda env: {"required": {"images": ["IMAGE", {"tooltip": "The images to save."}],
                                      "filename_prefix": _text(default="ComfyUI")},
                         "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}},
            _save_image, output_node=True, display_name="Save Image",
            description="Saves the input images to your ComfyUI output directory."),
    NodeDef("PreviewImage", "image",
            lambda env: {"required": {"images": ["IMAGE", {}]},
                         "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}},
            _preview_image, output_node=True, display_name="Preview Image",
            description="Saves the input images to your ComfyUI output directory."),
    NodeDef("SaveAnimatedPNG", "image/animation",
            lambda env: {"required": {"images": ["IMAGE", {}], "filename_prefix": _text(default="ComfyUI"),
                                      "fps": _float(6.0, 0.01, 1000.0), "compress_level": _int(4, 0, 9)},
                         "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}},
            _save_apng, output_node=True, python_module="comfy_extras.nodes_images"),
    NodeDef("StringConcatenate", "utils/string",
            lambda env: {"required": {"string_a": _text(True), "string_b": _text(True), "delimiter": _text()}},
            lambda env, i, info: ((f"{i['string_a']}{i['delimiter']}{i['string_b']}",), None),
            ("STRING",), display_name="Concatenate", python_module="comfy_extras.nodes_string"),
    NodeDef("PreviewAny", "utils",
            lambda env: {"required": {"source": [ANY, {}]}}, _preview_any, output_node=True,
            display_name="Preview Any", python_module="comfy_extras.nodes_preview_any"),
]
NODES: dict[str, NodeDef] = {n.name: n for n in _NODES}
_COUNTER_RE = re.compile(r"_(\d{5})_\.png$")


def counter_of(filename: str, prefix: str) -> int | None:
    """The numeric counter of ``{prefix}_NNNNN_.png`` names, else None."""
    if not filename.startswith(prefix + "_"):
        return None
    m = _COUNTER_RE.search(filename)
    return int(m.group(1)) if m and filename == f"{prefix}_{m.group(1)}_.png" else None

"""Which model files a host needs, where they go and who may see a token for them (pure, no I/O).

``STOKER_MODELS`` is a comma-separated list. Each entry is a download URL (Hugging Face, Civitai or
any HTTPS server), optionally prefixed with its ComfyUI folder (``loras:https://…``), or a bare
``folder/file`` name that must already be on the host (pre-installed in the image).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

import msgspec

MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx")
# kind (as written in a prefix or found in the URL) -> ComfyUI folder under models/
FOLDERS = {
    "checkpoint": "checkpoints", "checkpoints": "checkpoints", "ckpt": "checkpoints",
    "lora": "loras", "loras": "loras", "vae": "vae", "controlnet": "controlnet",
    "upscale": "upscale_models", "upscale_models": "upscale_models", "embedding": "embeddings",
    "embeddings": "embeddings", "clip": "text_encoders", "text_encoders": "text_encoders",
    "unet": "diffusion_models", "diffusion_models": "diffusion_models", "clip_vision": "clip_vision",
}
# Guessed from the URL when no prefix names the folder (first match wins; checkpoints otherwise).
_URL_HINTS = (("lora", "loras"), ("vae", "vae"), ("controlnet", "controlnet"), ("upscale", "upscale_models"),
              ("text_encoder", "text_encoders"), ("embedding", "embeddings"))


class TokenRule(msgspec.Struct, frozen=True):
    """Send the token from env ``env`` (as ``Authorization: Bearer``) only to these hosts and their subdomains."""

    env: str
    hosts: tuple[str, ...]


DEFAULT_TOKEN_RULES = (
    TokenRule("HF_TOKEN", ("huggingface.co", "hf.co")),
    TokenRule("CIVITAI_TOKEN", ("civitai.com",)),
)


class ModelFile(msgspec.Struct, frozen=True):
    """One model file: where it comes from (None: must be pre-installed), its folder and file name."""

    folder: str
    name: str
    url: str | None = None

    @property
    def key(self) -> str:
        """``folder/name``: how status and logs name the file."""
        return f"{self.folder}/{self.name}"


class ModelSpecError(ValueError):
    """An entry of STOKER_MODELS that cannot be used (the message says which and why)."""


def _name_from_url(path: str) -> str:
    return unquote(path.rstrip("/").rsplit("/", 1)[-1])


def _folder_from_url(url: str) -> str:
    lowered = url.lower()
    return next((folder for hint, folder in _URL_HINTS if hint in lowered), "checkpoints")


def parse_entry(entry: str) -> ModelFile:
    """One STOKER_MODELS entry as a ModelFile (ModelSpecError when unusable)."""
    entry = entry.strip()
    prefix, sep, rest = entry.partition(":")
    folder: str | None = None
    if sep and prefix.lower() in FOLDERS and "://" in rest:
        folder, entry = FOLDERS[prefix.lower()], rest.strip()
    if "://" in entry:
        parts = urlsplit(entry)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ModelSpecError(f"model URL must be http(s) with a host: {parts.scheme}://{parts.hostname or ''}")
        name = _name_from_url(parts.path)
        if not name or "/" in name or name in (".", ".."):
            raise ModelSpecError(f"cannot tell the file name of {parts.hostname}{parts.path}")
        return ModelFile(folder=folder or _folder_from_url(entry), name=name, url=entry)
    folder_part, _, name = entry.rpartition("/")
    if not name or name in (".", "..") or ".." in folder_part.split("/"):
        raise ModelSpecError(f"bad model name {entry!r}")
    return ModelFile(folder=FOLDERS.get(folder_part.lower(), folder_part) if folder_part else "checkpoints",
                     name=name)


def parse_models(value: str) -> list[ModelFile]:
    """Every entry of a STOKER_MODELS value, duplicates dropped, in order."""
    out: list[ModelFile] = []
    for entry in value.split(","):
        if entry.strip():
            model = parse_entry(entry)
            if all(m.key != model.key for m in out):
                out.append(model)
    return out


def has_model_extension(name: str) -> bool:
    """Whether ``name`` looks like a model file (else the server's Content-Disposition names it)."""
    return name.lower().endswith(MODEL_EXTENSIONS)


def host_matches(host: str, allowed: tuple[str, ...]) -> bool:
    """``host`` is one of ``allowed`` or a subdomain of one."""
    host = host.lower().rstrip(".")
    return any(host == a or host.endswith("." + a) for a in allowed)


def auth_headers(url: str, tokens: Mapping[str, str], rules: tuple[TokenRule, ...] = DEFAULT_TOKEN_RULES
                 ) -> dict[str, str]:
    """The Authorization header for ``url``: a token only goes to its own host (never across a redirect)."""
    parts = urlsplit(url)
    if parts.scheme != "https" and parts.hostname not in ("127.0.0.1", "localhost"):
        return {}  # never a token over plain HTTP to a remote host
    for rule in rules:
        token = tokens.get(rule.env, "")
        if token and host_matches(parts.hostname or "", rule.hosts):
            return {"Authorization": f"Bearer {token}"}
    return {}


def redact_url(url: str) -> str:
    """A URL fit for a log line: scheme, host and path only (no query: it may carry a token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{parts.path}"


def expected_sha256(headers: Mapping[str, str]) -> str | None:
    """The SHA-256 the source vouches for, if any (Hugging Face: ``X-Linked-Etag`` of an LFS file)."""
    for name in ("X-Linked-Etag", "X-Checksum-Sha256", "ETag"):
        value = (headers.get(name) or "").strip().strip('"').removeprefix("W/").strip('"').lower()
        if len(value) == 64 and all(c in "0123456789abcdef" for c in value):
            return value
    return None


def space_refusal(name: str, needed: int, free: int, reserve: int) -> str | None:
    """Why a download of ``needed`` bytes must not start with ``free`` bytes free, or None when it fits."""
    if needed + reserve <= free:
        return None
    gb = 1024 ** 3
    return (f"not enough disk for {name}: it needs {needed / gb:.2f} GB and {free / gb:.2f} GB is free "
            f"(keeping {reserve / gb:.2f} GB spare); rent with a bigger disk (template.disk_gb) or fewer models")

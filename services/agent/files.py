"""Files on the host the pool may place, fetch and remove: input images, outputs, LoRAs; and the models present.

``DiskFiles`` is the real host (a ComfyUI folder); the simulator has its own in-memory version.
Names are one or two plain path segments (``a.png`` or ``tenant/a.png``): nothing can climb out.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Protocol

KINDS = ("input", "output", "loras")
WIPED = ("input", "output", "temp")  # what a hand-over to another tenant clears (never models)
MODEL_FOLDERS = ("checkpoints", "loras", "vae", "controlnet", "upscale_models", "embeddings", "text_encoders",
                 "diffusion_models", "clip_vision")
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._ ()+\-]{0,199}$")


class BadName(ValueError):
    """A file name that is not one or two plain segments."""


def check_name(name: str) -> str:
    """``name`` when it is ``file`` or ``sub/file`` with plain segments, else BadName."""
    parts = name.split("/")
    if not 1 <= len(parts) <= 2 or not all(_SEGMENT.match(p) and ".." not in p for p in parts):
        raise BadName(f"bad file name {name!r}: use letters, digits, '._-()+ ' and at most one subfolder")
    return name


class HostFiles(Protocol):
    """The host's files, as the agent serves them."""

    def put(self, kind: str, name: str, data: bytes) -> None:
        """Store a file (overwriting)."""
        ...

    def get(self, kind: str, name: str) -> bytes | None:
        """A file's bytes, or None."""
        ...

    def delete(self, kind: str, name: str) -> bool:
        """Remove a file; False when it was not there."""
        ...

    def wipe(self) -> int:
        """Remove every input, output and temp file; returns how many."""
        ...

    def models(self) -> dict[str, list[str]]:
        """Model files present, by ComfyUI folder."""
        ...

    def model_size(self, folder: str, name: str) -> int | None:
        """Size of a complete model file, or None when absent."""
        ...

    def model_dir(self, folder: str) -> Path:
        """Where downloads of ``folder`` go."""
        ...

    def disk_free(self) -> int:
        """Free bytes where models are stored."""
        ...


class DiskFiles:
    """A ComfyUI folder on disk: ``input/``, ``output/``, ``temp/``, ``models/<folder>/``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, kind: str, name: str) -> Path:
        check_name(name)
        base = self.root / "models" / "loras" if kind == "loras" else self.root / kind
        return base / name

    def put(self, kind: str, name: str, data: bytes) -> None:
        path = self._path(kind, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    def get(self, kind: str, name: str) -> bytes | None:
        path = self._path(kind, name)
        return path.read_bytes() if path.is_file() else None

    def delete(self, kind: str, name: str) -> bool:
        path = self._path(kind, name)
        if not path.is_file():
            return False
        path.unlink()
        return True

    def wipe(self) -> int:
        count = 0
        for kind in WIPED:
            base = self.root / kind
            if not base.is_dir():
                continue
            for entry in list(base.iterdir()):
                count += sum(1 for p in entry.rglob("*") if p.is_file()) if entry.is_dir() else 1
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        return count

    def models(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for folder in MODEL_FOLDERS:
            base = self.root / "models" / folder
            if base.is_dir():
                names = sorted(p.name for p in base.iterdir() if p.is_file() and not p.name.startswith("."))
                if names:
                    out[folder] = names
        return out

    def model_size(self, folder: str, name: str) -> int | None:
        path = self.root / "models" / folder / name
        return path.stat().st_size if path.is_file() else None

    def model_dir(self, folder: str) -> Path:
        return self.root / "models" / folder

    def disk_free(self) -> int:
        base = self.root if self.root.exists() else self.root.parent
        return shutil.disk_usage(base).free

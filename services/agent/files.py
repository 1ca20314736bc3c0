"""Files on the host the pool may place, fetch and remove: input images, outputs, LoRAs; and the models present.

``DiskFiles`` is the real host (a ComfyUI folder); the simulator has its own in-memory version.
Paths are relative (``a.png``, ``stoker/<token>/a.png``) without empty, ``.`` or ``..`` segments, and
must resolve (symlinks included) inside their folder: nothing can climb out. The removal routes
follow the tenant contract (``DELETE /agent/files/{folder}/{path}`` and the hand-over wipe
``DELETE /agent/files``, answering ``{"removed": [...]}``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Protocol

KINDS = ("input", "output", "temp", "loras")
WIPED = ("input", "output", "temp")  # what a hand-over to another tenant clears (never models)
MODEL_FOLDERS = ("checkpoints", "loras", "vae", "controlnet", "upscale_models", "embeddings", "text_encoders",
                 "diffusion_models", "clip_vision")
MAX_DEPTH = 8


class BadName(ValueError):
    """A path that is absolute, has an empty, ``.`` or ``..`` segment, or is too deep."""


def check_name(name: str) -> str:
    """``name`` when it is a safe relative path (``sub/dir/file``), else BadName."""
    parts = name.split("/")
    if (not name or name.startswith("/") or "\\" in name or "\x00" in name or len(parts) > MAX_DEPTH
            or any(p in ("", ".", "..") or len(p) > 200 for p in parts)):
        raise BadName(f"unsafe path {name!r}: relative, no empty, '.' or '..' segments, at most {MAX_DEPTH} deep")
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
        """Remove a file (and subfolders it leaves empty); False when it was not there."""
        ...

    def wipe(self) -> list[str]:
        """Remove every user file (input, output, temp; not what the image shipped); ``folder/path`` of each."""
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
        self._shipped = {p for p in (root / "input").rglob("*") if p.is_file()} if (root / "input").is_dir() else set()

    def _base(self, kind: str) -> Path:
        return self.root / "models" / "loras" if kind == "loras" else self.root / kind

    def _path(self, kind: str, name: str) -> Path:
        check_name(name)
        base = self._base(kind)
        path = base / name
        if base.exists() and not path.resolve().is_relative_to(base.resolve()):
            raise BadName(f"unsafe path {name!r}: it leads outside {kind}/")
        return path

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
        base, parent = self._base(kind), path.parent
        while parent != base and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
        return True

    def wipe(self) -> list[str]:
        removed: list[str] = []
        for kind in WIPED:
            base = self.root / kind
            if not base.is_dir():
                continue
            for path in sorted(base.rglob("*"), reverse=True):
                if path.is_file() and path not in self._shipped:
                    path.unlink()
                    removed.append(f"{kind}/{path.relative_to(base).as_posix()}")
                elif path.is_dir() and not any(path.iterdir()):
                    path.rmdir()
        return sorted(removed)

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

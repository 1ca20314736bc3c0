"""User files on a shared GPU host: how a job's inputs are named, and the agent routes that remove them.

Several tenants' jobs run one after another on the same warm ComfyUI. A job may read only the
files it brought, and none of them may outlive it. Stock ComfyUI places files
(``POST /upload/image``) but has no route to remove one (see /work/shared/specs/comfyui-api.md),
so the Stoker agent on each GPU host serves these routes (authenticated like its other routes):

``DELETE /agent/files/{folder}/{path}``
    ``folder``: ``input`` | ``output`` | ``temp``; ``path``: the file relative to that folder,
    ``sub/dir/name.png`` (``/`` separates subfolders; each segment percent-encoded).
    200 ``{"removed": ["input/sub/dir/name.png"]}``; ``{"removed": []}`` when there was no such
    file (idempotent: the caller may repeat it). A subfolder left empty is removed too.
    400 ``{"error": {"code": "BAD_PATH", "message": ...}}`` for an unknown folder, an absolute
    path, a ``..`` or empty segment, or a path that resolves (symlinks included) outside the folder.

``DELETE /agent/files``
    The hand-over wipe, called when an instance is claimed for the next job: removes every user
    file: all of ``output/`` and ``temp/``, and every ``input/`` file the image did not ship with
    (ComfyUI's own ``example.png`` stays). 200 ``{"removed": [...]}``.

A host that answers 404 or 405 to these has no agent (a plain ComfyUI). Stoker then overwrites
each file with ``BLANK_PNG`` through ``POST /upload/image`` (``overwrite=true``, same ``type``
and ``subfolder``): the name stays, the bytes are gone. It cannot wipe such a host.

A job's inputs are placed as ``INPUT_ROOT/<token>/<name>``, ``token`` 128 random bits chosen at
submit and kept in the job's ``GenerationRequested.uploads``: the name cannot be guessed,
real ComfyUI lists only top-level input files in ``/object_info``, and the generation service
refuses workflows that load any file but the job's own.
"""

from __future__ import annotations

import re
import secrets
import struct
import zlib
from typing import Literal
from urllib.parse import quote

import msgspec

FILES_ROUTE = "/agent/files"
INPUT_ROOT = "stoker"  # input subfolder under which every job's inputs live, one folder per job
FOLDERS: tuple[str, ...] = ("input", "output", "temp")
Folder = Literal["input", "output", "temp"]
_TOKEN = re.compile(r"^[0-9a-f]{32}$")


class FileRef(msgspec.Struct, frozen=True):
    """One file as ComfyUI names it: folder (its ``type``), subfolder, file name."""

    folder: Folder
    subfolder: str
    filename: str

    @property
    def path(self) -> str:
        """``sub/dir/name`` relative to the folder."""
        return f"{self.subfolder}/{self.filename}" if self.subfolder else self.filename


class Removed(msgspec.Struct, frozen=True):
    """The agent's answer to a removal: ``folder/path`` of each file removed."""

    removed: list[str] = []


def new_token() -> str:
    """A job's input token: 128 random bits, hex."""
    return secrets.token_hex(16)


def input_name(token: str, name: str) -> str:
    """The ``LoadImage`` value (``subfolder/filename``) of one of a job's inputs."""
    if not _TOKEN.match(token) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name) or name.startswith("."):
        raise ValueError("bad input token or name")
    return f"{INPUT_ROOT}/{token}/{name}"


def split(path: str) -> tuple[str, str]:
    """``sub/dir/name`` -> (``sub/dir``, ``name``)."""
    sub, _, filename = path.rpartition("/")
    return sub, filename


def file_route(ref: FileRef) -> str:
    """The agent route that removes ``ref``."""
    return f"{FILES_ROUTE}/{ref.folder}/" + "/".join(quote(seg, safe="") for seg in ref.path.split("/"))


def safe_path(path: str) -> bool:
    """A relative path without ``..``, empty or hidden-traversal segments (what the agent accepts)."""
    parts = path.split("/")
    return bool(path) and not path.startswith("/") and "\\" not in path and "\x00" not in path and all(
        p not in ("", ".", "..") for p in parts)


def _blank_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\x00\x00\x00")) + chunk(b"IEND", b""))


BLANK_PNG = _blank_png()  # one black pixel: what a file is overwritten with on a host without the agent

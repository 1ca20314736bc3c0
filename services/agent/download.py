"""Downloading one model file: resume with Range, checksum where the source gives one, disk check first.

Tokens go only to their own host: redirects are followed by hand so the Authorization header is
decided again for every hop (Hugging Face sends LFS files from a CDN on another host). URLs are
logged without their query and headers are never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import shutil
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from urllib.parse import urljoin

import aiohttp

from .models import DEFAULT_TOKEN_RULES, ModelFile, TokenRule, auth_headers, expected_sha256, \
    has_model_extension, redact_url, space_refusal

log = logging.getLogger("stoker.agent.download")

MAX_REDIRECTS = 10
CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_DISPOSITION = re.compile(r"filename\*?=(?:UTF-8'')?\"?([^\";]+)\"?", re.I)


class DownloadError(Exception):
    """A download that did not finish; ``retry`` says whether trying again may help."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


def free_bytes(path: Path) -> int:
    """Free bytes on the file system holding ``path``."""
    return shutil.disk_usage(path).free


class Downloader:
    """Fetches model files into folders; one instance per agent (shares the HTTP session)."""

    def __init__(self, session: aiohttp.ClientSession, *, tokens: Mapping[str, str],
                 rules: tuple[TokenRule, ...] = DEFAULT_TOKEN_RULES,
                 free_space: Callable[[Path], int] = free_bytes, reserve_bytes: int = 2 * 1024 ** 3,
                 attempts: int = 5, backoff: float = 1.0,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._session, self._tokens, self._rules = session, dict(tokens), rules
        self._free_space, self._reserve = free_space, reserve_bytes
        self._attempts, self._backoff, self._sleep = max(1, attempts), backoff, sleep

    async def fetch(self, model: ModelFile, folder: Path, on_progress: Callable[[int, int | None], None]
                    ) -> tuple[str, int]:
        """Download ``model`` into ``folder``; returns (file name, size). Raises DownloadError."""
        assert model.url is not None
        folder.mkdir(parents=True, exist_ok=True)
        delay = self._backoff
        for attempt in range(1, self._attempts + 1):
            try:
                return await self._once(model, folder, on_progress)
            except DownloadError as exc:
                if not exc.retry or attempt == self._attempts:
                    raise
                reason = str(exc)
            except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
                if attempt == self._attempts:
                    raise DownloadError(f"download of {model.key} failed after {attempt} attempts: "
                                        f"{type(exc).__name__}", retry=True) from None
                reason = type(exc).__name__
            log.warning("download %s from %s interrupted (%s); resuming in %.1fs (attempt %d/%d)", model.key,
                        redact_url(model.url), reason, delay, attempt + 1, self._attempts)
            await self._sleep(delay)
            delay = min(delay * 2, 60.0)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(self, model: ModelFile, folder: Path, on_progress: Callable[[int, int | None], None]
                    ) -> tuple[str, int]:
        assert model.url is not None
        part = folder / f".{model.name}.part"
        have = part.stat().st_size if part.exists() else 0
        url, sha, linked_size = model.url, None, None
        for _ in range(MAX_REDIRECTS + 1):
            headers = auth_headers(url, self._tokens, self._rules)
            if have:
                headers["Range"] = f"bytes={have}-"
            resp = await self._session.get(url, headers=headers, allow_redirects=False)
            async with resp:
                sha = sha or expected_sha256(resp.headers)
                linked_size = linked_size or _int(resp.headers.get("X-Linked-Size"))
                if resp.status in (301, 302, 303, 307, 308) and resp.headers.get("Location"):
                    url = urljoin(url, resp.headers["Location"])
                    continue
                if resp.status == 416 and have:
                    part.unlink(missing_ok=True)  # the partial file no longer matches: start over
                    raise DownloadError(f"{model.key}: server refused the resume range; restarting", retry=True)
                _refuse_status(model, resp.status)
                name = _final_name(model, resp.headers)
                start, total = _span(resp, have, linked_size)
                if start == 0 and have:
                    have = 0  # the server ignored Range: start from scratch
                refusal = space_refusal(model.key, (total - start) if total is not None else 0,
                                        self._free_space(folder), self._reserve)
                if refusal:
                    raise DownloadError(refusal, retry=False)
                size = await self._write(resp, part, start, total, on_progress)
            if total is not None and size != total:
                raise DownloadError(f"{model.key}: got {size} of {total} bytes", retry=True)
            if sha is not None:
                got = await asyncio.to_thread(_sha256, part)
                if got != sha:
                    part.unlink(missing_ok=True)
                    raise DownloadError(f"checksum mismatch for {model.key}: the source says sha256 {sha}, the "
                                        f"downloaded file is {got}; the file was deleted", retry=False)
            part.rename(folder / name)
            log.info("downloaded %s (%d bytes%s)", f"{model.folder}/{name}", size, ", sha256 checked" if sha else "")
            return name, size
        raise DownloadError(f"{model.key}: more than {MAX_REDIRECTS} redirects", retry=False)

    async def _write(self, resp: aiohttp.ClientResponse, part: Path, start: int, total: int | None,
                     on_progress: Callable[[int, int | None], None]) -> int:
        done = start
        with part.open("r+b" if start else "wb") as out:
            out.seek(start)
            out.truncate()
            async for chunk in resp.content.iter_chunked(CHUNK):
                out.write(chunk)
                done += len(chunk)
                on_progress(done, total)
        return done


def _int(value: str | None) -> int | None:
    return int(value) if value and value.strip().isdigit() else None


def _refuse_status(model: ModelFile, status: int) -> None:
    if status in (200, 206):
        return
    where = redact_url(model.url or "")
    if status in (401, 403):
        raise DownloadError(f"{where} answered {status}: this model needs a token (set HF_TOKEN or CIVITAI_TOKEN in "
                            "the pool's environment and list it in template.token_env) or its licence accepted on "
                            "the model page", retry=False)
    if status == 404:
        raise DownloadError(f"{where} answered 404: no such file; check the URL in template.models", retry=False)
    raise DownloadError(f"{where} answered {status}", retry=status >= 500 or status == 429)


def _final_name(model: ModelFile, headers: Mapping[str, str]) -> str:
    if has_model_extension(model.name):
        return model.name
    match = _DISPOSITION.search(headers.get("Content-Disposition", ""))
    name = Path(match.group(1)).name if match else ""
    return name if name and name not in (".", "..") else model.name


def _span(resp: aiohttp.ClientResponse, have: int, linked_size: int | None) -> tuple[int, int | None]:
    """(offset the body starts at, total size) of a 200 or 206 answer."""
    if resp.status == 206:
        match = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
        if match and int(match.group(1)) == have:
            return have, None if match.group(3) == "*" else int(match.group(3))
        raise DownloadError("the server answered a different range than asked", retry=True)
    length = _int(resp.headers.get("Content-Length"))
    return 0, length if length is not None else linked_size


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()

"""Logs: one JSON object per line (time, level, service, logger, message, trace ids), secrets masked.

``setup_logging`` replaces the root handler. Masking happens in a handler filter, so it covers
every logger (and exception text) whatever the format; ``redact(value)`` adds a secret learnt at
run time (a provider key set over NATS).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

import msgspec
from opentelemetry import trace

MASK = "***"
MIN_SECRET = 4  # shorter values would mask ordinary words
# Variables whose values are secrets wherever they appear (comma-separated lists are split).
SECRET_ENV = ("STOKER_ADMIN_KEY", "AUDIT_HMAC_KEY", "AUDIT_SALT", "AUDIT_HMAC_OLD_KEYS", "VASTAI_API_KEY",
              "VAST_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "CIVITAI_TOKEN", "CIVITAI_API_TOKEN",
              "STOKER_WEBHOOK_SECRET", "STOKER_ALERT_WEBHOOK_SECRET", "STOKER_INSTANCE_KEY", "NATS_PASSWORD",
              "PGPASSWORD", "ADMIN_API_KEY", "HUGGINGFACE_HUB_TOKEN")  # the last two: the seed's names
URL_ENV = ("DATABASE_URL", "NATS_URL")  # their passwords are secrets
HEADER_ENV = ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS")  # key=value,... (auth tokens)
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_encode = msgspec.json.Encoder().encode


def secrets_from(env: Mapping[str, str]) -> list[str]:
    """The secret values configured in ``env``: keys, tokens, URL passwords, exporter header values."""
    found: list[str] = []
    for name in SECRET_ENV:
        found += [part.strip() for part in env.get(name, "").split(",")]
    for name in URL_ENV:
        password = _password(env.get(name, ""))
        found += [password, unquote(password)]  # as written in the URL, and decoded
    for name in HEADER_ENV:
        for pair in env.get(name, "").split(","):
            found.append(unquote(pair.partition("=")[2]).strip())
    return [s for s in found if len(s) >= MIN_SECRET]


def _password(url: str) -> str:
    try:
        return urlsplit(url).password or ""
    except ValueError:  # not a URL at all: nothing to find
        return ""


class Redactor(logging.Filter):
    """Masks every known secret in a record's message, arguments and exception text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        """Mask ``secret`` from now on (longest first, so a secret containing another is masked whole)."""
        if len(secret) >= MIN_SECRET and secret not in self._secrets:
            self._secrets = sorted([*self._secrets, secret], key=len, reverse=True)

    def mask(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place: message formatted and masked, exception text masked."""
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: log what we have rather than nothing
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = self.mask(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
            record.exc_info = None  # the masked text is what gets printed
        if record.stack_info:
            record.stack_info = self.mask(record.stack_info)
        for key, value in vars(record).items():
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, self.mask(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, service, logger, message, trace_id/span_id, exception, extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "service": self.service, "logger": record.name,
            "message": record.getMessage(),
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            out["trace_id"] = format(context.trace_id, "032x")
            out["span_id"] = format(context.span_id, "016x")
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out:
                out[key] = value if isinstance(value, (str, int, float, bool)) or value is None else repr(value)
        return _encode(out).decode()


class TextFormatter(logging.Formatter):
    """Human-readable lines for development, with the trace id when there is one."""

    def __init__(self, service: str) -> None:
        super().__init__("%(asctime)s %(levelname)s " + service + " %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The usual line, plus ``[trace <id>]`` inside a span."""
        line = super().format(record)
        context = trace.get_current_span().get_span_context()
        return f"{line} [trace {context.trace_id:032x}]" if context.is_valid else line


_redactor: Redactor | None = None


def log_format(env: Mapping[str, str]) -> str:
    """``STOKER_LOG_FORMAT`` (json or text); json unless in dev mode (``STOKER_DEV``)."""
    given = (env.get("STOKER_LOG_FORMAT") or "").strip().lower()
    if given in ("json", "text"):
        return given
    dev = (env.get("STOKER_DEV") or "").strip().lower() not in ("", "0", "false", "no", "off")
    return "text" if dev else "json"


def setup_logging(service_name: str, env: Mapping[str, str], secrets: Iterable[str] = (),
                  stream: TextIO | None = None) -> logging.Handler:
    """Send every log record to ``stream`` (stderr) as JSON or text, masking ``secrets`` and those in ``env``."""
    global _redactor
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service_name) if log_format(env) == "json" else TextFormatter(service_name))
    _redactor = Redactor([*secrets_from(env), *secrets])
    handler.addFilter(_redactor)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel((env.get("STOKER_LOG_LEVEL") or "INFO").upper())
    for noisy in ("httpx", "httpcore"):  # lines per HTTP request and connection step are noise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    return handler


def redact(secret: str) -> None:
    """Mask ``secret`` in every log line from now on (a secret learnt at run time)."""
    if _redactor is not None:
        _redactor.add(secret)


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, or the type alone when it has no message (never an empty "()")."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def throttled_errors(logger: logging.Logger, what: str, *, every_s: float = 30.0,
                     clock: Callable[[], float] = time.monotonic) -> Callable[[Exception], Awaitable[None]]:
    """A NATS ``error_cb``: one warning line (no traceback) per ``every_s`` while a connection keeps failing."""
    last = [-every_s]
    suppressed = [0]

    async def on_error(exc: Exception) -> None:
        now = clock()
        if now - last[0] < every_s:
            suppressed[0] += 1
            return
        more = f" ({suppressed[0]} more since the last report)" if suppressed[0] else ""
        last[0], suppressed[0] = now, 0
        logger.warning("%s: %s%s", what, describe(exc), more)

    return on_error

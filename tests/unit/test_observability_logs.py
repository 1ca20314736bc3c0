"""JSON log lines: the fields, the trace id inside a span, and secrets masked wherever they appear."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from libs.observability import logs, tracing

SECRETS = {"STOKER_ADMIN_KEY": "adm1n-s3cret", "HF_TOKEN": "hf_abcdefgh", "AUDIT_HMAC_OLD_KEYS": "old-one,old-two",
           "DATABASE_URL": "postgresql://stoker:pg-pass%40word@db:5432/stoker",
           "OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer%20otel-token", "VAST_API_KEY": "abc"}


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Root logging configured by setup_logging into a buffer; restored afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    logs.setup_logging("pool", SECRETS, secrets=["extra-secret"], stream=out)
    yield out
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    logging.captureWarnings(False)


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_secrets_come_from_keys_tokens_url_passwords_and_exporter_headers() -> None:
    found = set(logs.secrets_from(SECRETS))
    assert {"adm1n-s3cret", "hf_abcdefgh", "old-one", "old-two", "pg-pass@word", "pg-pass%40word",
            "Bearer otel-token"} <= found
    assert "abc" not in found  # too short to mask without mangling ordinary words


def test_a_record_is_one_json_line_with_the_service_and_no_secret(captured: io.StringIO) -> None:
    log = logging.getLogger("stoker.test")
    log.info("renting with %s and %r", "adm1n-s3cret", {"token": "hf_abcdefgh"}, extra={"who": "old-two"})
    log.warning("connect to postgresql://stoker:pg-pass@word@db failed: extra-secret")
    try:
        raise RuntimeError("upstream said hf_abcdefgh is invalid")
    except RuntimeError:
        log.exception("call failed")
    logs.redact("learnt-later")
    log.error("new key learnt-later")
    text = captured.getvalue()
    for secret in ("adm1n-s3cret", "hf_abcdefgh", "old-two", "pg-pass@word", "extra-secret", "learnt-later"):
        assert secret not in text
    first, second, third, fourth = lines(captured)
    assert first["message"] == "renting with *** and {'token': '***'}" and first["who"] == "***"
    assert {"time", "level", "service", "logger", "message"} <= set(first) and "trace_id" not in first
    assert (first["level"], first["service"], first["logger"]) == ("info", "pool", "stoker.test")
    assert str(first["time"]).endswith("+00:00")
    assert second["message"] == "connect to postgresql://stoker:***@db failed: ***"
    assert "RuntimeError: upstream said *** is invalid" in str(third["exception"])
    assert fourth["message"] == "new key ***"


def test_lines_inside_a_span_carry_its_trace_id(captured: io.StringIO) -> None:
    tracing.use_exporter(InMemorySpanExporter())
    try:
        with tracing.span("pool", "work") as span:
            logging.getLogger("stoker.test").info("inside")
        logging.getLogger("stoker.test").info("outside")
    finally:
        tracing.reset()
    inside, outside = lines(captured)
    assert inside["trace_id"] == f"{span.get_span_context().trace_id:032x}" and len(str(inside["span_id"])) == 16
    assert "trace_id" not in outside


def test_text_in_dev_mode_json_otherwise() -> None:
    assert logs.log_format({}) == "json"
    assert logs.log_format({"STOKER_DEV": "1"}) == "text"
    assert logs.log_format({"STOKER_DEV": "1", "STOKER_LOG_FORMAT": "json"}) == "json"
    assert logs.log_format({"STOKER_LOG_FORMAT": "TEXT"}) == "text"
    out = io.StringIO()
    root = logging.getLogger()
    saved = list(root.handlers)
    try:
        logs.setup_logging("audit", {"STOKER_LOG_FORMAT": "text", "AUDIT_HMAC_KEY": "hmac-key-1"}, stream=out)
        logging.getLogger("stoker.audit").warning("key hmac-key-1")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved:
            root.addHandler(handler)
        logging.captureWarnings(False)
    assert out.getvalue().rstrip().endswith("WARNING audit stoker.audit: key ***")

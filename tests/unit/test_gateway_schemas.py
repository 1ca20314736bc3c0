"""Request types refuse what they should, the OpenAPI document covers every operation, metrics render."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from libs.events.pool import PoolConfig
from services.gateway import schemas as s
from services.gateway.app import API_MODULES
from services.gateway.metrics import Metrics
from services.gateway.openapi import docs_page, document


def decode(data: bytes, type_: type) -> object:
    return msgspec.json.decode(data, type=type_)


def test_bodies_refuse_unknown_fields_and_control_characters() -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        decode(b'{"username": "abc", "password": "0123456789", "is_admin": true}', s.RegisterBody)
    with pytest.raises(msgspec.ValidationError, match="control characters"):
        decode(b'{"reason": "a\\u0000b"}', s.TerminateBody)
    with pytest.raises(msgspec.ValidationError):
        decode(b'{"username": "abc\\n", "password": "0123456789"}', s.RegisterBody)
    body = decode(b'{"username": "abc", "password": "tab\\tinside!"}', s.LoginBody)
    assert body.password == "tab\tinside!"  # passwords may hold anything


def test_query_times_become_utc_and_out_of_range_is_refused() -> None:
    q = msgspec.convert({"since": "2030-01-01T05:00:00+05:00"}, s.EventsQuery, strict=False)
    assert q.since == datetime(2030, 1, 1, tzinfo=UTC) and q.since.tzinfo is UTC
    with pytest.raises(msgspec.ValidationError, match="out of range"):
        msgspec.convert({"since": "0001-01-01T00:00:00+05:00"}, s.EventsQuery, strict=False)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"since": "2030-01-01T00:00:00"}, s.EventsQuery, strict=False)  # no offset
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"aggregate_id": "a.b"}, s.EventsQuery, strict=False)


def test_pool_config_patch_mirrors_the_config_with_everything_optional() -> None:
    patch = decode(b'{"desired_size": 2, "spend_caps": {"max_per_day": null}}', s.PoolConfigPatch)
    assert msgspec.to_builtins(patch) == {"desired_size": 2, "spend_caps": {"max_per_day": None}}
    assert msgspec.to_builtins(decode(b"{}", s.PoolConfigPatch)) == {}
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        decode(b'{"offer_filter": {"gpu": []}}', s.PoolConfigPatch)
    assert {f.name for f in msgspec.structs.fields(s.PoolConfigPatch)} == {
        f.name for f in msgspec.structs.fields(PoolConfig)}


def test_the_provider_key_never_shows_in_a_repr() -> None:
    body = s.ProviderKeysBody(vastai_api_key="secret-vast-key")
    assert "secret-vast-key" not in repr(body) and "secret-vast-key" not in str(body)


def all_operations() -> list:
    return [op for m in API_MODULES for op in m.OPERATIONS]


def test_the_openapi_document_covers_every_operation_and_resolves() -> None:
    ops = all_operations()
    doc = document(ops)
    assert doc["openapi"] == "3.1.0"
    assert sum(len(methods) for methods in doc["paths"].values()) == len(ops)
    text = msgspec.json.encode(doc).decode()
    for ref in {part.split('"')[0] for part in text.split('"$ref":"#/components/schemas/')[1:]}:
        assert ref in doc["components"]["schemas"], ref
    login = doc["paths"]["/api/v1/auth/login"]["post"]
    assert login["security"] == [] and "429" in login["responses"] and "422" in login["responses"]
    configure = doc["paths"]["/api/v1/pool/config"]["put"]
    assert configure["x-role"] == "admin" and {"401", "403"} <= set(configure["responses"])
    events = doc["paths"]["/api/v1/events"]["get"]
    assert {p["name"] for p in events["parameters"]} >= {"aggregate_type", "type", "since", "until", "after"}
    assert doc["paths"]["/api/v1/admin/tokens"]["post"]["x-loopback-only"] is True
    assert len({op.name for op in ops}) == len(ops)  # operation ids are unique


def test_the_docs_page_is_plain_html() -> None:
    page = docs_page(document(all_operations()))
    assert "<script" not in page and "http://" not in page and "https://" not in page.replace("https://json", "")
    assert "/api/v1/pool/instances/{id}/terminate" in page and "loopback only" in page


def test_metrics_render_counters_histograms_and_gauges() -> None:
    m = Metrics()
    m.observe("GET", "/api/v1/pool", 200, 0.003)
    m.observe("GET", "/api/v1/pool", 200, 0.2)
    m.observe("GET", "/api/v1/pool", 429, 30.0)
    text = m.render([("stoker_pool_instances", "gauge", "By state.", {"state": "ready"}, 2.0),
                     ("stoker_pool_instances", "gauge", "By state.", {"state": "idle\"x"}, 0.0)])
    assert 'stoker_http_requests_total{method="GET",route="/api/v1/pool",status="200"} 2' in text
    assert 'le="0.005"} 1' in text and 'le="0.25"} 2' in text and 'le="10.0"} 2' in text and 'le="+Inf"} 3' in text
    assert 'stoker_http_request_duration_seconds_count{method="GET",route="/api/v1/pool"} 3' in text
    assert text.count("# TYPE stoker_pool_instances gauge") == 1 and 'state="idle\\"x"' in text
    assert text.endswith("\n")


def test_times_far_out_do_not_break_bounds() -> None:
    from services.gateway.history import shifted

    big = datetime.max.replace(tzinfo=UTC)
    assert shifted(big, timedelta(hours=1)) == big
    assert shifted(datetime.min.replace(tzinfo=UTC), -timedelta(hours=1)).year == 1970

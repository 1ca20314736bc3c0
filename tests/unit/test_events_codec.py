"""The codec: round trips, and a clear error for each kind of bad message."""

from datetime import datetime, timezone

import msgspec
import pytest

from libs.events import codec, generation, pool
from libs.events.envelope import Aggregate, Envelope
from libs.events.ids import is_subject_token, uuid7
from libs.events import subjects


def envelope(event: object, schema: int = 1) -> Envelope:
    return Envelope(id=str(uuid7()), schema=schema, aggregate_type="instance", aggregate_id="i-1",
                    aggregate_version=1, occurred_at=datetime(2026, 1, 2, tzinfo=timezone.utc),
                    actor="pool", event=event, correlation_id="c-1")


def test_round_trip_keeps_type_and_fields() -> None:
    offer = pool.Offer(offer_id="7", gpu_name="RTX 4090", dph=0.4, host_id="9", machine_id="12")
    event = pool.InstanceRented(pool_id="default", provider="sim", provider_id="77", offer=offer,
                                dph=0.4, label="stoker-default")
    decoded = codec.decode(codec.encode(envelope(event)))
    assert decoded.event == event
    assert type(decoded.event) is pool.InstanceRented
    assert decoded.correlation_id == "c-1"


def test_every_event_type_is_registered_once() -> None:
    names = list(codec.EVENT_TYPES)
    assert len(names) == len(set(names))
    for required in ["InstanceRented", "ExtractionFailed", "Ready", "Claimed", "Released", "Terminated",
                     "PoolConfigured", "GenerationRequested", "GenerationStarted", "GenerationCompleted",
                     "GenerationFailed"]:
        assert required in names


def test_events_are_frozen_and_keyword_only() -> None:
    event = pool.Released(pool_id="p", lease_id="l")
    with pytest.raises(AttributeError):
        event.lease_id = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        pool.Released("p", "l")  # type: ignore[misc]


def test_garbage_is_malformed() -> None:
    with pytest.raises(codec.MalformedMessage):
        codec.decode(b"\x00\xffnot json")


def test_unknown_event_type_is_named() -> None:
    data = codec.encode(envelope(pool.PoolReset(pool_id="p"))).replace(b"PoolReset", b"PoolExploded")
    with pytest.raises(codec.UnknownEventType) as info:
        codec.decode(data)
    assert info.value.event_type == "PoolExploded"


def test_newer_schema_is_refused() -> None:
    data = codec.encode(envelope(pool.PoolReset(pool_id="p"), schema=pool.PoolReset.SCHEMA + 1))
    with pytest.raises(codec.NewerSchema):
        codec.decode(data)


def test_unknown_fields_are_ignored_and_new_fields_default() -> None:
    raw = msgspec.json.decode(codec.encode(envelope(generation.GenerationFailed(reason="timeout", message="m"))))
    raw["event"]["added_in_future"] = 1
    raw["unknown_envelope_field"] = True
    decoded = codec.decode(msgspec.json.encode(raw))
    assert decoded.event == generation.GenerationFailed(reason="timeout", message="m")


def test_wrong_field_type_is_malformed_with_type_name() -> None:
    raw = msgspec.json.decode(codec.encode(envelope(pool.PoolReset(pool_id="p"))))
    raw["event"]["pool_id"] = 5
    with pytest.raises(codec.MalformedMessage) as info:
        codec.decode(msgspec.json.encode(raw))
    assert info.value.event_type == "PoolReset"


def test_uuid7_is_time_ordered_and_versioned() -> None:
    ids = [uuid7() for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(u.version == 7 for u in ids)


def test_subjects_are_per_aggregate_and_reject_unsafe_ids() -> None:
    agg = Aggregate(subjects.POOL, pool.INSTANCE, "i-1")
    assert subjects.aggregate_subject(agg) == "ev.pool.instance.i-1"
    assert subjects.aggregate_of("ev.pool.instance.i-1") == agg
    assert subjects.event_stream(subjects.POOL) == "EVENTS_POOL"
    for bad in ["a.b", "a b", "*", ">", ""]:
        assert not is_subject_token(bad)
        with pytest.raises(ValueError):
            subjects.aggregate_subject(Aggregate("pool", "instance", bad))

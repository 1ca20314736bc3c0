"""Offer catalogue and the Vast filter comparator."""

from typing import Any

import pytest

from services.pool.sim.offers import (
    QueryError, driver_version_int, generate_offers, matches, parse_order, price_offer, sort_rows,
)

ROW = {"num_gpus": 1, "gpu_name": "RTX 4090", "disk_space": 120.0, "dph_total": 0.41, "rentable": True,
       "geolocation": "Texas, US", "driver_version": "550.54.15", "reliability": 0.985, "cuda_max_good": 12.4}


def test_cli_string_operands_are_compared_numerically() -> None:
    assert matches(ROW, {"num_gpus": {"eq": "1"}, "disk_space": {"gte": "50"}, "dph_total": {"lte": "0.6"}})
    assert not matches(ROW, {"disk_space": {"gte": "500"}})
    assert matches(ROW, {"reliability": {"gt": "0.98"}, "cuda_max_good": {"gte": "12.1"}})
    assert not matches(ROW, {"num_gpus": {"neq": "1"}})


def test_bools_geolocation_lists_and_driver_versions() -> None:
    assert matches(ROW, {"rentable": {"eq": True}}) and matches(ROW, {"rentable": {"eq": "true"}})
    assert not matches(ROW, {"rentable": {"eq": False}})
    assert matches(ROW, {"geolocation": {"in": ["US", "CA"]}})
    assert not matches(ROW, {"geolocation": {"notin": ["US"]}})
    assert matches(ROW, {"geolocation": {"eq": "Texas, US"}})
    assert matches(ROW, {"driver_version": {"gte": driver_version_int("535.86.05")}})
    assert driver_version_int("535.86.05") == 535086005
    assert matches(ROW, {"gpu_name": {"in": ["RTX 3090", "RTX 4090"]}})


def test_control_keys_and_unknown_fields_are_not_filters() -> None:
    assert matches(ROW, {"order": [["score", "desc"]], "type": "on-demand", "limit": 5, "no_such_field": {"eq": 1}})


def test_bad_operands_raise_query_error() -> None:
    with pytest.raises(QueryError):
        matches(ROW, {"num_gpus": {"eq": "one"}})
    with pytest.raises(QueryError):
        matches(ROW, {"num_gpus": {"like": 1}})
    with pytest.raises(QueryError):
        matches(ROW, {"gpu_name": {"in": "RTX 4090"}})


def test_order_both_syntaxes_and_missing_values_last() -> None:
    rows: list[dict[str, Any]] = [{"id": 1, "p": 0.5}, {"id": 2, "p": None}, {"id": 3, "p": 0.2}, {"id": 4, "p": 0.5}]
    assert [r["id"] for r in sort_rows(rows, parse_order([["p", "asc"]]))] == [3, 1, 4, 2]
    assert [r["id"] for r in sort_rows(rows, parse_order([{"col": "p", "dir": "desc"}, {"col": "id", "dir": "desc"}]))] == [4, 1, 3, 2]


def test_generation_is_deterministic_and_has_bad_hosts() -> None:
    a, hosts = generate_offers(7, 30, 0.25)
    b, _ = generate_offers(7, 30, 0.25)
    c, _ = generate_offers(8, 30, 0.25)
    assert a == b and a != c
    assert len(a) == 30 and len({o["id"] for o in a}) == 30
    assert {"RTX 4090", "RTX 3090"} <= {o["gpu_name"] for o in a}
    assert any(h.bad for h in hosts.values()) and any(not h.bad for h in hosts.values())
    for o in a:
        assert o["geolocation"][-2:].isalpha() and o["verification"] in ("verified", "unverified")


def test_price_includes_allocated_storage_and_bid_floor() -> None:
    offer = generate_offers(1, 5)[0][0]
    small = price_offer(offer, 5.0, "on-demand", 0.0)
    big = price_offer(offer, 500.0, "on-demand", 0.0)
    bid = price_offer(offer, 5.0, "bid", 0.0)
    assert big["dph_total"] > small["dph_total"] > bid["dph_total"]
    assert small["dph_total"] == pytest.approx(offer["dph_base"] + offer["storage_cost"] * 5 / 720, abs=1e-6)

"""Host penalties decay (issue 12 item 14): short at first, doubling on repeats, forgotten after a clean spell."""

from datetime import UTC, datetime, timedelta

from services.pool import reputation as r

T0 = datetime(2026, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)


def test_a_first_vanish_costs_an_hour_not_half_a_day() -> None:
    p = r.penalize({}, "h1", "vanished", T0)
    assert r.avoided_hosts(p, T0 + 0.5 * H) == {"h1"}
    assert r.avoided_hosts(p, T0 + 1.01 * H) == frozenset()


def test_repeats_double_up_to_a_day_and_a_clean_spell_starts_over() -> None:
    p: dict = {}
    at = T0
    for expected in (1, 2, 4, 8, 16, 24, 24):
        p = r.penalize(p, "h1", "vanished", at)
        assert p["h1/vanished"].until - at == expected * H
        at = p["h1/vanished"].until + H  # failed again soon after the penalty ended
    p = r.penalize(p, "h1", "vanished", p["h1/vanished"].until + r.FORGET + H)
    assert p["h1/vanished"].count == 1


def test_severity_orders_hosts_by_their_record() -> None:
    p = r.penalize({}, "bad", "extraction", T0)
    p = r.penalize(p, "bad", "vanished", T0)
    p = r.penalize(p, "meh", "vanished", T0)
    assert sorted(["bad", "meh"], key=lambda h: r.severity(p, h, T0)) == ["meh", "bad"]


def test_expired_penalties_are_kept_while_they_still_count() -> None:
    p = r.penalize({}, "h1", "vanished", T0)
    assert r.expire(p, T0 + 2 * H) == p
    assert r.expire(p, T0 + H + r.FORGET + H) == {}

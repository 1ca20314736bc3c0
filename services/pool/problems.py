"""Pool problems: what the reconciler hit that a person must fix, as raise/clear events (pure)."""

from __future__ import annotations

from collections.abc import Mapping

from libs.events import pool as ev
from libs.events.base import Event

from .providers.base import ProviderError

PROVIDER_AUTH = "provider_auth"
PROVIDER_UNREACHABLE = "provider_unreachable"
NO_OFFERS = "no_offers"
RENT_REFUSED = "rent_refused"
HOSTS_AVOIDED = "hosts_avoided"  # every matching offer is on a penalised host: renting from the least penalised
LISTING = (PROVIDER_AUTH, PROVIDER_UNREACHABLE)
RENTING = (NO_OFFERS, RENT_REFUSED)
UNREACHABLE_AFTER = 3  # listing passes failed in a row before "provider_unreachable" is a problem


def from_provider_error(exc: ProviderError, doing: str) -> tuple[str, str]:
    """(code, message) of a failed provider call: a refused key is its own problem."""
    text = str(exc)
    lowered = text.lower()
    if exc.status in (401, 403) or "invalid user key" in lowered or "log in" in lowered:
        return PROVIDER_AUTH, (f"the provider refused the API key while {doing} ({text}); set a valid key "
                               "(VASTAI_API_KEY, or POST /api/v1/admin/tokens on the Stoker machine)")
    return PROVIDER_UNREACHABLE, f"{doing} failed: {text}"


def no_offers_message(flt: ev.OfferFilter) -> str:
    """Why nothing can be rented: no offer matches the filter."""
    return (f"no offer matches the filter (GPUs {', '.join(flt.gpu_names) or 'any'}, at most ${flt.max_dph:.2f}/h, "
            f"disk ≥ {flt.min_disk_gb:.0f} GB, reliability ≥ {flt.min_reliability}); widen the filter (offer_filter) under Pool → Settings")


def changes(pool_id: str, current: Mapping[str, ev.Problem], found: Mapping[str, str],
            checked: set[str]) -> list[Event]:
    """Events that bring ``current`` in line with what this pass ``found`` among the codes it ``checked``."""
    out: list[Event] = []
    for code in sorted(checked):
        if code in found and (code not in current or current[code].message != found[code]):
            out.append(ev.ProblemRaised(pool_id=pool_id, code=code, message=found[code]))
        elif code not in found and code in current:
            out.append(ev.ProblemCleared(pool_id=pool_id, code=code))
    return out

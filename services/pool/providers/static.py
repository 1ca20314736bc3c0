"""ComfyUI hosts the user already runs, offered to the pool as if rentable: nothing is ever rented or destroyed."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from libs.events.pool import InstanceTemplate, Offer, OfferFilter
from services.pool.providers.base import OfferUnavailable, ProviderInstance

STATIC_GPU = "static"


def normalise_url(url: str) -> str:
    """``url`` checked (http/https with a host) and without a trailing slash."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"a static host must be an http(s) URL, got {url!r}")
    return url


def static_id(url: str) -> str:
    """A stable provider id for a host URL (the same URL always gives the same id)."""
    return "static-" + hashlib.sha256(normalise_url(url).lower().encode()).hexdigest()[:12]


@dataclass
class _Host:
    url: str
    provider_id: str
    since: float
    rented_label: str | None = None


class StaticProvider:
    """Fixed ComfyUI hosts: always running, free of charge, 'rented' and 'destroyed' only in bookkeeping."""

    runs_agent = False  # the user's own ComfyUI: probed and called directly, no instance secret

    def __init__(self, urls: Iterable[str], *, label: str | None = None, name: str = "static",
                 clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self._label = label  # what a free host is listed with (None: not claimed by any pool)
        self._clock = clock
        self._hosts: dict[str, _Host] = {}
        for url in urls:
            clean = normalise_url(url)
            pid = static_id(clean)
            self._hosts.setdefault(pid, _Host(url=clean, provider_id=pid, since=clock()))

    def __repr__(self) -> str:
        return f"StaticProvider(name={self.name!r}, hosts={len(self._hosts)})"

    async def search_offers(self, flt: OfferFilter, *, exclude_hosts: frozenset[str] = frozenset(),
                            limit: int = 20) -> list[Offer]:
        """One free pseudo-offer per host not currently rented (the GPU filter does not apply)."""
        return [self._offer(h) for h in self._hosts.values()
                if h.rented_label is None and h.provider_id not in exclude_hosts][:limit]

    async def create_instance(self, offer: Offer, template: InstanceTemplate, *, label: str,
                              env: dict[str, str]) -> str:
        """Mark the host rented under ``label``; nothing is launched and ``env`` is not used."""
        host = self._hosts.get(offer.offer_id)
        if host is None or host.rented_label is not None:
            raise OfferUnavailable(f"static host {offer.offer_id} is not free")
        host.rented_label, host.since = label, self._clock()
        return host.provider_id

    async def list_instances(self) -> list[ProviderInstance]:
        """Every host, always running."""
        return [self._instance(h) for h in self._hosts.values()]

    async def show_instance(self, provider_id: str) -> ProviderInstance | None:
        """The host, or None for an id that is not one of ours."""
        host = self._hosts.get(provider_id)
        return self._instance(host) if host else None

    async def destroy_instance(self, provider_id: str) -> None:
        """Mark the host free again; the host itself keeps running."""
        host = self._hosts.get(provider_id)
        if host is not None and host.rented_label is not None:
            host.rented_label, host.since = None, self._clock()

    async def aclose(self) -> None:
        """Nothing to release."""

    def _offer(self, host: _Host) -> Offer:
        return Offer(offer_id=host.provider_id, gpu_name=STATIC_GPU, dph=0.0, host_id=host.provider_id,
                     machine_id=host.provider_id, reliability=1.0)

    def _instance(self, host: _Host) -> ProviderInstance:
        return ProviderInstance(
            provider_id=host.provider_id, label=host.rented_label if host.rented_label is not None else self._label,
            actual_status="running", intended_status="running", host_id=host.provider_id,
            machine_id=host.provider_id, gpu_name=STATIC_GPU, dph=0.0, comfy_url=host.url, start_date=host.since,
        )

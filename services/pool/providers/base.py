"""The provider port: what the pool needs from a GPU marketplace, and its errors."""

from __future__ import annotations

from typing import Protocol

import msgspec

from libs.events.pool import InstanceTemplate, Offer, OfferFilter


class ProviderInstance(msgspec.Struct, frozen=True, kw_only=True):
    """One instance as the provider reports it."""

    provider_id: str
    label: str | None = None
    actual_status: str | None = None
    intended_status: str | None = None
    status_msg: str | None = None
    host_id: str = ""
    machine_id: str = ""
    gpu_name: str = ""
    dph: float = 0.0
    comfy_url: str | None = None  # http://ip:port of ComfyUI (8188/tcp) once the port is mapped
    start_date: float | None = None
    ssh_host: str = ""
    ssh_port: int = 0


class ProviderError(Exception):
    """A provider call failed; ``retryable`` says whether trying again later may work."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class OfferUnavailable(ProviderError):
    """The offer was taken or no longer exists; choose another."""


class Provider(Protocol):
    """A GPU marketplace (Vast.ai, the simulator, or fixed hosts)."""

    name: str

    async def search_offers(self, flt: OfferFilter, *, exclude_hosts: frozenset[str] = frozenset(),
                            limit: int = 20) -> list[Offer]:
        """Offers matching the filter, best first (GPU priority order, then price)."""
        ...

    async def create_instance(self, offer: Offer, template: InstanceTemplate, *, label: str,
                              env: dict[str, str]) -> str:
        """Rent the offer; return the provider's instance id. ``env`` may hold secrets: never log it."""
        ...

    async def list_instances(self) -> list[ProviderInstance]:
        """Every instance of this account (all pages)."""
        ...

    async def show_instance(self, provider_id: str) -> ProviderInstance | None:
        """One instance, or None when it is gone."""
        ...

    async def destroy_instance(self, provider_id: str) -> bool | None:
        """Ask the provider to destroy the instance; True when it answered that it is already gone."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...

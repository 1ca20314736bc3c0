"""Own boxes first, rent the rest: one Provider over the ``agents`` provider and a marketplace."""

from __future__ import annotations

from libs.events.pool import InstanceTemplate, Offer, OfferFilter

from .agents import OFFER_PREFIX, AgentsProvider
from .base import Provider, ProviderInstance


class CompositeProvider:
    """Routes each call to the provider an offer or instance belongs to; lists both."""

    runs_agent = True

    def __init__(self, agents: AgentsProvider, rented: Provider) -> None:
        self.agents, self.rented = agents, rented
        self.name = rented.name

    def name_for(self, offer_id: str) -> str:
        """Which provider an offer is from (recorded in the rental's events)."""
        return self.agents.name if offer_id.startswith(OFFER_PREFIX) else self.rented.name

    def set_api_key(self, key: str) -> None:
        """The marketplace's key."""
        setter = getattr(self.rented, "set_api_key", None)
        if setter is not None:
            setter(key)

    async def search_offers(self, flt: OfferFilter, *, exclude_hosts: frozenset[str] = frozenset(),
                            limit: int = 20) -> list[Offer]:
        """Free own boxes, then marketplace offers."""
        own = await self.agents.search_offers(flt, exclude_hosts=exclude_hosts, limit=limit)
        return own + await self.rented.search_offers(flt, exclude_hosts=exclude_hosts, limit=limit)

    async def create_instance(self, offer: Offer, template: InstanceTemplate, *, label: str,
                              env: dict[str, str]) -> str:
        """Take the node, or rent the offer."""
        target = self.agents if offer.offer_id.startswith(OFFER_PREFIX) else self.rented
        return await target.create_instance(offer, template, label=label, env=env)

    async def list_instances(self) -> list[ProviderInstance]:
        """Both lists."""
        return await self.agents.list_instances() + await self.rented.list_instances()

    def _owner(self, provider_id: str) -> Provider:
        return self.agents if provider_id in self.agents._view().nodes else self.rented

    async def show_instance(self, provider_id: str) -> ProviderInstance | None:
        """From whichever owns it."""
        return await self._owner(provider_id).show_instance(provider_id)

    async def destroy_instance(self, provider_id: str) -> bool | None:
        """Give back or destroy; True when the owner answered the instance is already gone."""
        return await self._owner(provider_id).destroy_instance(provider_id)

    def forget_taken(self, provider_id: str) -> None:
        """The rental of a node was recorded: the view knows from now on."""
        self.agents.forget_taken(provider_id)

    async def aclose(self) -> None:
        """Close both."""
        await self.agents.aclose()
        await self.rented.aclose()

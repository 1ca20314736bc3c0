"""Your own GPU boxes as a provider: nodes that joined with a join token and keep heartbeating.

Nothing is rented or destroyed: "create" takes a free, live node for an instance and "destroy"
gives it back. A node whose heartbeats stop is no longer listed, so the pool sees its instance
vanish (``provider_lost``, an alert); when heartbeats come back it is offered again. Nodes cost
their join token's ``dph`` (default 0) and are offered before anything rented (CompositeProvider).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from libs.events.pool import InstanceTemplate, Offer, OfferFilter

from ..instance import LIVE_PHASES
from ..view import Node, PoolView
from .base import OfferUnavailable, ProviderInstance

OFFER_PREFIX = "agent:"
LOST_AFTER_S = 30.0


class AgentsProvider:
    """Joined nodes, as a Provider."""

    name = "agents"
    runs_agent = True

    def __init__(self, view: Callable[[], PoolView], heartbeats: Callable[[], Awaitable[dict[str, float]]], *,
                 lost_after_s: float = LOST_AFTER_S, clock: Callable[[], float] = time.time) -> None:
        self._view, self._heartbeats, self._lost_after, self._clock = view, heartbeats, lost_after_s, clock
        self._taking: dict[str, str] = {}  # node id -> label, between create and the InstanceRented event

    async def _alive(self) -> list[Node]:
        """Nodes whose token stands and whose last heartbeat is recent."""
        view = self._view()
        if not view.nodes:
            return []
        beats, now = await self._heartbeats(), self._clock()
        usable = {t.id for t in view.join_tokens.values() if not t.revoked}
        return [n for n in view.nodes.values()
                if n.token_id in usable and now - beats.get(n.id, 0.0) <= self._lost_after]

    def _held(self) -> dict[str, str]:
        """Node id -> label of the instance using it."""
        held = {i.provider_id: i.label for i in self._view().instances.values()
                if i.provider == self.name and i.phase in LIVE_PHASES and i.provider_id}
        return {**self._taking, **held}

    def _dph(self, node: Node) -> float:
        token = self._view().join_tokens.get(node.token_id)
        return token.dph if token is not None else 0.0

    async def search_offers(self, flt: OfferFilter, *, exclude_hosts: frozenset[str] = frozenset(),
                            limit: int = 20) -> list[Offer]:
        """Free live nodes (your own boxes: the GPU filter does not apply, the price cap does)."""
        held = self._held()
        out = [Offer(offer_id=OFFER_PREFIX + n.id, gpu_name=n.gpu_name or "own GPU", dph=self._dph(n),
                     host_id=f"node-{n.id}", machine_id=f"node-{n.id}", reliability=1.0)
               for n in await self._alive() if n.id not in held and self._dph(n) <= flt.max_dph]
        return out[:limit]

    async def create_instance(self, offer: Offer, template: InstanceTemplate, *, label: str,
                              env: dict[str, str]) -> str:
        """Take the node for the instance ``label`` names."""
        node_id = offer.offer_id.removeprefix(OFFER_PREFIX)
        if node_id in self._held() or node_id not in {n.id for n in await self._alive()}:
            raise OfferUnavailable(f"node {node_id} is busy or gone")
        self._taking[node_id] = label
        return node_id

    def _row(self, node: Node, label: str) -> ProviderInstance:
        return ProviderInstance(provider_id=node.id, label=label, actual_status="running", intended_status="running",
                                status_msg=f"own box {node.name}", host_id=f"node-{node.id}",
                                machine_id=f"node-{node.id}", gpu_name=node.gpu_name, dph=self._dph(node),
                                comfy_url=node.url.rstrip("/"))

    async def list_instances(self) -> list[ProviderInstance]:
        """Live nodes in use."""
        held = self._held()
        return [self._row(n, held[n.id]) for n in await self._alive() if n.id in held]

    async def show_instance(self, provider_id: str) -> ProviderInstance | None:
        """The node in use, or None when it is lost or free."""
        return next((p for p in await self.list_instances() if p.provider_id == provider_id), None)

    async def destroy_instance(self, provider_id: str) -> None:
        """Give the node back."""
        self._taking.pop(provider_id, None)

    def forget_taken(self, node_id: str) -> None:
        """The rental was recorded (or given up): the view knows from now on."""
        self._taking.pop(node_id, None)

    async def aclose(self) -> None:
        """Nothing to release."""

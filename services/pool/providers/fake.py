"""An in-memory marketplace for fast tests of the pool: offers, instances, injected failures, a call log."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from libs.events.pool import InstanceTemplate, Offer, OfferFilter
from services.pool.providers.base import OfferUnavailable, ProviderError, ProviderInstance

METHODS = ("search_offers", "create_instance", "list_instances", "show_instance", "destroy_instance")
_UNSET: Any = object()


@dataclass(frozen=True)
class Call:
    """One call the fake received (``args`` by keyword)."""

    method: str
    args: dict[str, Any] = field(default_factory=dict)


class FakeProvider:
    """The Provider port in memory. Renting takes the offer off the market; destroying removes the instance."""

    def __init__(self, offers: Iterable[Offer] = (), instances: Iterable[ProviderInstance] = (), *,
                 name: str = "fake", clock: Callable[[], float] = lambda: 0.0, first_id: int = 1000) -> None:
        self.name = name
        self.clock = clock
        self.offers: dict[str, Offer] = {o.offer_id: o for o in offers}
        self.instances: dict[str, ProviderInstance] = {i.provider_id: i for i in instances}
        self.calls: list[Call] = []
        self.hidden: set[str] = set()  # rented but not listed yet (the real API's listing lag)
        self.hide_new = False  # True: every new rental starts hidden until reveal()
        self.zombie_destroys = 0  # next N destroys answer success but the instance stays
        self.closed = False
        self._failures: dict[str, deque[ProviderError]] = {}
        self._next_id = first_id

    # --- test helpers ------------------------------------------------------------------

    def add_offer(self, offer: Offer) -> None:
        """Put ``offer`` on the market."""
        self.offers[offer.offer_id] = offer

    def add_instance(self, instance: ProviderInstance) -> None:
        """Make ``instance`` exist at the provider (e.g. an orphan)."""
        self.instances[instance.provider_id] = instance

    def fail_next(self, method: str, error: ProviderError | None = None, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` (or ``"*"``: any method) raise ``error``."""
        if method != "*" and method not in METHODS:
            raise ValueError(f"unknown provider method {method!r}")
        err = error if error is not None else ProviderError("injected failure", retryable=True)
        self._failures.setdefault(method, deque()).extend([err] * times)

    def set_instance(self, provider_id: str, *, actual_status: str | None = _UNSET, status_msg: str | None = _UNSET,
                     intended_status: str | None = _UNSET, comfy_url: str | None = _UNSET) -> ProviderInstance:
        """Change what the provider reports for one instance; only the given fields change."""
        changes = {k: v for k, v in dict(actual_status=actual_status, status_msg=status_msg,
                                         intended_status=intended_status, comfy_url=comfy_url).items()
                   if v is not _UNSET}
        inst = msgspec.structs.replace(self.instances[provider_id], **changes)
        self.instances[provider_id] = inst
        return inst

    def make_running(self, provider_id: str, comfy_url: str) -> ProviderInstance:
        """Shortcut: the container runs and ComfyUI's port is mapped."""
        return self.set_instance(provider_id, actual_status="running", status_msg="success", comfy_url=comfy_url)

    def vanish(self, provider_id: str) -> None:
        """The instance disappears without being destroyed (host died)."""
        self.instances.pop(provider_id, None)
        self.hidden.discard(provider_id)

    def reveal(self, provider_id: str | None = None) -> None:
        """End the listing lag of one hidden instance (or of all)."""
        if provider_id is None:
            self.hidden.clear()
        else:
            self.hidden.discard(provider_id)

    def calls_to(self, method: str) -> list[Call]:
        """The logged calls of one method, in order."""
        return [c for c in self.calls if c.method == method]

    # --- the port ----------------------------------------------------------------------

    async def search_offers(self, flt: OfferFilter, *, exclude_hosts: frozenset[str] = frozenset(),
                            limit: int = 20) -> list[Offer]:
        """Offers matching the filter, best first (GPU priority order, then price)."""
        self._enter("search_offers", flt=flt, exclude_hosts=exclude_hosts, limit=limit)
        priority = {g: i for i, g in enumerate(flt.gpu_names)}
        found = [o for o in self.offers.values()
                 if (not priority or o.gpu_name in priority) and o.dph <= flt.max_dph and o.num_gpus == 1
                 and o.disk_gb >= flt.min_disk_gb and o.reliability >= flt.min_reliability
                 and o.host_id not in exclude_hosts]
        found.sort(key=lambda o: (priority.get(o.gpu_name, 0), o.dph, o.offer_id))
        return found[:limit]

    async def create_instance(self, offer: Offer, template: InstanceTemplate, *, label: str,
                              env: dict[str, str]) -> str:
        """Rent the offer (it leaves the market); the new instance is provisioning (status None)."""
        self._enter("create_instance", offer=offer, template=template, label=label, env=dict(env))
        listed = self.offers.pop(offer.offer_id, None)
        if listed is None:
            raise OfferUnavailable(f"offer {offer.offer_id} is not available")
        pid = str(self._next_id)
        self._next_id += 1
        self.instances[pid] = ProviderInstance(
            provider_id=pid, label=label, actual_status=None, intended_status="running",
            host_id=listed.host_id, machine_id=listed.machine_id, gpu_name=listed.gpu_name, dph=listed.dph,
            start_date=self.clock(),
        )
        if self.hide_new:
            self.hidden.add(pid)
        return pid

    async def list_instances(self) -> list[ProviderInstance]:
        """Every listed instance."""
        self._enter("list_instances")
        return [i for pid, i in self.instances.items() if pid not in self.hidden]

    async def show_instance(self, provider_id: str) -> ProviderInstance | None:
        """One instance, or None when gone (or still hidden by the listing lag)."""
        self._enter("show_instance", provider_id=provider_id)
        return None if provider_id in self.hidden else self.instances.get(provider_id)

    async def destroy_instance(self, provider_id: str) -> bool:
        """Remove the instance (unless a zombie destroy was armed); True when it was already gone."""
        self._enter("destroy_instance", provider_id=provider_id)
        if self.zombie_destroys > 0 and provider_id in self.instances:
            self.zombie_destroys -= 1
            return False
        self.hidden.discard(provider_id)
        return self.instances.pop(provider_id, None) is None

    async def aclose(self) -> None:
        """Mark the fake closed."""
        self.calls.append(Call("aclose"))
        self.closed = True

    def _enter(self, method: str, **args: Any) -> None:
        self.calls.append(Call(method, args))
        for key in (method, "*"):
            queue = self._failures.get(key)
            if queue:
                raise queue.popleft()

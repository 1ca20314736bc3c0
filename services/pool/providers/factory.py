"""Choose and build the provider from configuration (STOKER_PROVIDER and friends)."""

from __future__ import annotations

from collections.abc import Mapping

from services.pool.providers.base import Provider
from services.pool.providers.static import StaticProvider
from services.pool.providers.vastai import VastAIProvider

VAST_DEFAULT_URL = "https://console.vast.ai"
SIM_DEFAULT_KEY = "sim-key"
KINDS = ("vastai", "sim", "static")


class ProviderConfigError(ValueError):
    """The provider configuration is missing or invalid (the message names variables, never values of keys)."""


def api_key(config: Mapping[str, str]) -> str:
    """The Vast.ai key from VASTAI_API_KEY, else VAST_API_KEY ('' when neither is set)."""
    return (config.get("VASTAI_API_KEY") or config.get("VAST_API_KEY") or "").strip()


def make_provider(config: Mapping[str, str]) -> Provider:
    """Build the provider STOKER_PROVIDER names: ``vastai`` (default), ``sim`` or ``static``."""
    kind = (config.get("STOKER_PROVIDER") or "vastai").strip().lower()
    url = (config.get("VAST_URL") or "").strip()
    if kind == "vastai":
        key = api_key(config)
        if not key:
            raise ProviderConfigError("STOKER_PROVIDER=vastai needs a Vast.ai API key: "
                                      "set VASTAI_API_KEY (or VAST_API_KEY)")
        return VastAIProvider(key, url or VAST_DEFAULT_URL, name="vastai")
    if kind == "sim":
        if not url:
            raise ProviderConfigError("STOKER_PROVIDER=sim needs VAST_URL (the simulator's address)")
        return VastAIProvider(api_key(config) or SIM_DEFAULT_KEY, url, name="sim")
    if kind == "static":
        hosts = [h.strip() for h in (config.get("STOKER_STATIC_HOSTS") or "").split(",") if h.strip()]
        if not hosts:
            raise ProviderConfigError("STOKER_PROVIDER=static needs STOKER_STATIC_HOSTS "
                                      "(comma-separated ComfyUI URLs)")
        try:
            return StaticProvider(hosts)
        except ValueError as exc:
            raise ProviderConfigError(f"STOKER_STATIC_HOSTS: {exc}") from None
    raise ProviderConfigError(f"STOKER_PROVIDER must be one of {', '.join(KINDS)}, not {kind!r}")

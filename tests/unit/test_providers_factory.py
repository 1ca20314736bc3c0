"""make_provider: STOKER_PROVIDER chooses, errors name variables and never show a key."""

from __future__ import annotations

import pytest

from services.pool.providers.factory import ProviderConfigError, make_provider
from services.pool.providers.static import StaticProvider
from services.pool.providers.vastai import VastAIProvider

pytestmark = pytest.mark.timeout(5)


async def test_vastai_is_the_default_and_needs_a_key() -> None:
    with pytest.raises(ProviderConfigError, match="VASTAI_API_KEY.*VAST_API_KEY"):
        make_provider({})
    p = make_provider({"VAST_API_KEY": "k-123456789"})
    assert isinstance(p, VastAIProvider) and p.name == "vastai"
    assert "console.vast.ai" in repr(p) and "k-123456789" not in repr(p)
    await p.aclose()
    p = make_provider({"STOKER_PROVIDER": "vastai", "VASTAI_API_KEY": "a", "VAST_API_KEY": "b",
                       "VAST_URL": "http://127.0.0.1:9999"})
    assert "127.0.0.1:9999" in repr(p)
    await p.aclose()


async def test_sim_points_at_vast_url_with_any_key() -> None:
    p = make_provider({"STOKER_PROVIDER": "sim", "VAST_URL": "http://127.0.0.1:18765/"})
    assert isinstance(p, VastAIProvider) and p.name == "sim" and "http://127.0.0.1:18765'" in repr(p)
    await p.aclose()
    with pytest.raises(ProviderConfigError, match="VAST_URL"):
        make_provider({"STOKER_PROVIDER": "sim"})


async def test_static_reads_the_host_list() -> None:
    p = make_provider({"STOKER_PROVIDER": "static", "STOKER_STATIC_HOSTS": "http://a:8188, http://b:8188,"})
    assert isinstance(p, StaticProvider) and len(await p.list_instances()) == 2
    with pytest.raises(ProviderConfigError, match="STOKER_STATIC_HOSTS"):
        make_provider({"STOKER_PROVIDER": "static"})
    with pytest.raises(ProviderConfigError, match="STOKER_STATIC_HOSTS"):
        make_provider({"STOKER_PROVIDER": "static", "STOKER_STATIC_HOSTS": "not-a-url"})


def test_unknown_kind() -> None:
    with pytest.raises(ProviderConfigError, match="sim"):
        make_provider({"STOKER_PROVIDER": "aws", "VAST_API_KEY": "secret-key-1"})

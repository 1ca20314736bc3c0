"""Pool configuration bounds (issue 12 item 8): nonsense is refused, at the gateway and by the pool, with a reason."""

import msgspec
import pytest

from libs.events import pool as ev
from services.gateway import schemas as s
from services.pool.instance import PoolError
from services.pool.policy import parse_config

NONSENSE = [
    ({"spend_caps": {"max_dph": -1}}, "max_dph"),
    ({"spend_caps": {"max_dph": 0}}, "max_dph"),
    ({"spend_caps": {"max_per_day": -5}}, "max_per_day"),
    ({"offer_filter": {"min_reliability": 5.7e233}}, "min_reliability"),
    ({"offer_filter": {"min_reliability": -0.1}}, "min_reliability"),
    ({"offer_filter": {"max_dph": -1}}, "max_dph"),  # 0 is allowed: rent nothing, own boxes only
    ({"offer_filter": {"min_disk_gb": -10}}, "min_disk_gb"),
    ({"offer_filter": {"min_direct_ports": -1}}, "min_direct_ports"),
    ({"offer_filter": {"gpu_names": ["RTX\x004090"]}}, "gpu_names"),
    ({"offer_filter": {"gpu_names": ["RTX 4090\n"]}}, "gpu_names"),
    ({"offer_filter": {"gpu_names": [""]}}, "gpu_names"),
    ({"template": {"image": ""}}, "image"),
    ({"template": {"image": "vastai/comfy:latest\x00"}}, "image"),
    ({"template": {"image": "a b"}}, "image"),
    ({"template": {"disk_gb": -1}}, "disk_gb"),
    ({"template": {"disk_gb": 0}}, "disk_gb"),
    ({"template": {"disk_gb": 1e12}}, "disk_gb"),
    ({"template": {"ports": [0]}}, "ports"),
    ({"template": {"ports": [70000]}}, "ports"),
    ({"template": {"models": ["https://x/y\x00"]}}, "models"),
    ({"template": {"onstart": "bash\x00"}}, "onstart"),
    ({"readiness": {"probe_timeout_s": 0}}, "probe_timeout_s"),
    ({"readiness": {"probe_max_backoff_s": 1e300}}, "probe_max_backoff_s"),
    ({"readiness": {"required_models": ["a\x01"]}}, "required_models"),
    ({"desired_size": -1}, "desired_size"),
    ({"max_size": 10**9}, "max_size"),
    ({"idle_timeout_s": -1}, "idle_timeout_s"),
    ({"lease_max_s": 1e99}, "lease_max_s"),
]


@pytest.mark.parametrize("changes, field", NONSENSE)
def test_the_pool_refuses_nonsense_and_names_the_field(changes: dict, field: str) -> None:
    merged = {**msgspec.to_builtins(ev.PoolConfig()), **changes}
    for key, value in changes.items():
        if isinstance(value, dict):
            merged[key] = {**msgspec.to_builtins(getattr(ev.PoolConfig(), key)), **value}
    with pytest.raises(PoolError) as err:
        parse_config(merged)
    assert err.value.code == "VALIDATION_FAILED" and field in str(err.value)


# A JSON Schema pattern's ``$`` lets one trailing line break through; the pool refuses that one.
@pytest.mark.parametrize("changes, field", [c for c in NONSENSE if "\\n" not in repr(c[0])])
def test_the_gateway_refuses_it_before_it_reaches_the_pool(changes: dict, field: str) -> None:
    with pytest.raises(msgspec.ValidationError) as err:
        msgspec.json.decode(msgspec.json.encode(changes), type=s.PoolConfigPatch)
    assert field in str(err.value)


def test_sensible_configurations_still_pass() -> None:
    cfg = parse_config({"desired_size": 2, "max_size": 4, "spend_caps": {"max_dph": 2.5, "max_per_day": None},
                        "offer_filter": {"gpu_names": [], "min_disk_gb": 0, "min_reliability": 0,
                                         "min_direct_ports": 0},
                        "template": {"image": "ghcr.io/acme/comfy@sha256:abc", "disk_gb": 80, "ports": [8188],
                                     "onstart": "bash -c 'start'\nexit 0"},
                        "readiness": {"probe_timeout_s": 2.0, "probe_initial_backoff_s": 0.1}})
    assert cfg.spend_caps.max_dph == 2.5 and cfg.template.disk_gb == 80
    assert parse_config(msgspec.to_builtins(ev.PoolConfig())) == ev.PoolConfig()

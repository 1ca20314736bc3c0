"""Which checkpoints a pool offers, and the refusal of one it cannot provide (before a job fails on a GPU)."""

from __future__ import annotations

import pytest

from libs.events import pool as ev
from services.generation import domain as d
from services.generation.commands import check_checkpoint, known_checkpoints
from services.pool.app import initial_config
from services.pool.view import PoolView


def test_a_fresh_pool_offers_the_checkpoint_the_built_in_templates_load() -> None:
    from services.generation.templates import TEMPLATES
    from services.generation.workflow import checkpoint_of

    offered = known_checkpoints(PoolView(pool_id="p"))
    assert offered == [ev.DEFAULT_CHECKPOINT]
    for template in TEMPLATES.values():  # every default template's checkpoint comes with the default pool template
        assert checkpoint_of(template.workflow) in offered, template.name
    url = ev.InstanceTemplate().models[0]
    assert url.startswith("https://huggingface.co/") and url.rsplit("/", 1)[-1] == ev.DEFAULT_CHECKPOINT


def test_hosts_you_run_yourself_download_nothing_and_require_nothing() -> None:
    static = initial_config("static", 1)
    assert static.template.models == () and static.readiness.required_models == ()
    assert initial_config("vastai", 0).template.models == ev.DEFAULT_MODELS


def test_a_checkpoint_the_pool_cannot_provide_is_refused_saying_what_to_do() -> None:
    pool = PoolView(pool_id="p", config=ev.PoolConfig(template=ev.InstanceTemplate(models=()),
                                                      readiness=ev.Readiness(required_models=())))
    with pytest.raises(d.DomainError) as err:
        check_checkpoint("v1-5-pruned-emaonly.safetensors", pool, known_checkpoints(pool))
    assert err.value.code == "CHECKPOINT_UNAVAILABLE"
    assert "Pool → Settings → Models" in str(err.value) and "offers no checkpoint" in str(err.value)
    assert err.value.details == {"checkpoint": "v1-5-pruned-emaonly.safetensors", "available": []}


def test_an_offered_checkpoint_passes_and_an_unknown_pool_refuses_nothing() -> None:
    pool = PoolView(pool_id="p")
    check_checkpoint(ev.DEFAULT_CHECKPOINT, pool, known_checkpoints(pool))
    check_checkpoint("anything.safetensors", None, [])  # the pool view has not caught up: the claim decides
    check_checkpoint(None, pool, [])
    with pytest.raises(d.DomainError, match="the pool offers v1-5-pruned-emaonly.safetensors"):
        check_checkpoint("sdxl.safetensors", pool, known_checkpoints(pool))

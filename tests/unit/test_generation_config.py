"""Settings come from an environment-like mapping, with clear errors."""

import pytest

from services.generation.config import ConfigError, gen_config


def test_defaults_work_in_an_empty_environment() -> None:
    cfg = gen_config({})
    assert cfg.nats_url == "nats://127.0.0.1:4222" and cfg.pool_id == "default" and cfg.concurrency == 4
    assert cfg.worker and cfg.runner.autoscale and cfg.webhooks.max_attempts >= 5
    assert not cfg.webhooks.allow_private and cfg.byo_nodes is None


def test_values_are_read_and_checked() -> None:
    cfg = gen_config({"NATS_URL": "nats://n:1", "STOKER_POOL_ID": "p", "STOKER_GEN_CONCURRENCY": "2",
                      "STOKER_GEN_WORKER": "0", "STOKER_DEV": "1", "STOKER_GEN_BYO_NODES": "EmptyImage, SaveImage",
                      "STOKER_GEN_LOST_AFTER": "5", "STOKER_WEBHOOK_ATTEMPTS": "6"})
    assert (cfg.nats_url, cfg.pool_id, cfg.concurrency, cfg.worker) == ("nats://n:1", "p", 2, False)
    assert cfg.webhooks.allow_private and cfg.byo_nodes == {"EmptyImage", "SaveImage"}
    assert cfg.runner.follow.lost_after_s == 5.0 and cfg.webhooks.max_attempts == 6
    with pytest.raises(ConfigError, match="STOKER_GEN_CONCURRENCY must be a number"):
        gen_config({"STOKER_GEN_CONCURRENCY": "many"})
    with pytest.raises(ConfigError, match="STOKER_WEBHOOK_ATTEMPTS must be at least 5"):
        gen_config({"STOKER_WEBHOOK_ATTEMPTS": "3"})
    with pytest.raises(ConfigError, match="STOKER_GEN_WORKER must be 1/0"):
        gen_config({"STOKER_GEN_WORKER": "maybe"})

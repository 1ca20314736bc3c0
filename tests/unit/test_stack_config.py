"""`stoker up` configuration: flags over environment over defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs.stack.config import UpOptions, resolve_config

CWD = Path("/srv/app")


def test_defaults() -> None:
    config = resolve_config(UpOptions(), {}, CWD)
    assert config.data_dir == CWD / ".stoker"
    assert config.dev and config.provider == "sim"
    assert (config.gateway_host, config.gateway_port) == ("127.0.0.1", 8080)
    assert config.nats_url is None and config.database_url is None
    assert config.ui_url == "http://127.0.0.1:8080/"
    assert (config.nats_dir, config.pg_dir) == (CWD / ".stoker/nats", CWD / ".stoker/postgres")


def test_environment_overrides_defaults() -> None:
    env = {
        "STOKER_PROVIDER": "static",
        "STOKER_GATEWAY_PORT": "9000",
        "STOKER_GATEWAY_HOST": "0.0.0.0",
        "STOKER_DATA_DIR": "/var/lib/stoker",
        "NATS_URL": "nats://nats:4222",
        "DATABASE_URL": "postgresql://db/stoker",
    }
    config = resolve_config(UpOptions(), env, CWD)
    assert config.provider == "static" and config.gateway_port == 9000
    assert config.data_dir == Path("/var/lib/stoker")
    assert config.nats_url == "nats://nats:4222" and config.database_url == "postgresql://db/stoker"
    assert config.ui_url == "http://127.0.0.1:9000/", "a wildcard bind is reached through loopback"


def test_flags_override_environment() -> None:
    options = UpOptions(data_dir=Path("d"), port=1234, prod=True, provider="vastai", nats_port=5, pg_port=6)
    config = resolve_config(options, {"STOKER_PROVIDER": "static", "STOKER_GATEWAY_PORT": "9000"}, CWD)
    assert config.provider == "vastai" and config.gateway_port == 1234
    assert config.data_dir == CWD / "d" and not config.dev
    assert (config.nats_port, config.pg_port) == (5, 6)


@pytest.mark.parametrize(
    ("options", "env"),
    [
        (UpOptions(provider="aws"), {}),
        (UpOptions(), {"STOKER_PROVIDER": "x"}),
        (UpOptions(), {"STOKER_GATEWAY_PORT": "http"}),
    ],
)
def test_invalid_settings_are_rejected(options: UpOptions, env: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        resolve_config(options, env, CWD)


def test_unknown_services_are_rejected() -> None:
    assert resolve_config(UpOptions(services=("gateway",)), {}, CWD).services == ("gateway",)
    with pytest.raises(ValueError, match="unknown service"):
        resolve_config(UpOptions(services=("gateway", "mailer")), {}, CWD)

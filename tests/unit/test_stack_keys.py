"""Dev secrets: generated once, kept 0600, overridden by the environment, required in production."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from libs.stack.keys import MissingSecret, load_or_create_secret, resolve_secret, resolve_stack_secrets


def test_secret_is_generated_once_with_owner_only_permissions(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "admin_key"
    first = load_or_create_secret(path)
    assert len(first) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == first


def test_an_empty_secret_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "k").write_text("")
    with pytest.raises(RuntimeError, match="empty"):
        load_or_create_secret(tmp_path / "k")


def test_environment_wins_and_nothing_is_written(tmp_path: Path) -> None:
    secret = resolve_secret({"STOKER_ADMIN_KEY": "from-env"}, "STOKER_ADMIN_KEY", tmp_path / "k", dev=True)
    assert (secret.value, secret.source) == ("from-env", "env")
    assert not (tmp_path / "k").exists()
    assert "from-env" not in repr(secret)


def test_dev_mode_uses_the_kept_secret(tmp_path: Path) -> None:
    secret = resolve_secret({}, "STOKER_ADMIN_KEY", tmp_path / "k", dev=True)
    assert secret.source == "file" and secret.path == tmp_path / "k"
    assert secret.value == (tmp_path / "k").read_text().strip()


def test_production_requires_the_environment(tmp_path: Path) -> None:
    with pytest.raises(MissingSecret, match="AUDIT_HMAC_KEY"):
        resolve_secret({}, "AUDIT_HMAC_KEY", tmp_path / "k", dev=False)
    assert not (tmp_path / "k").exists()


def test_stack_secrets_are_kept_apart_in_the_data_dir(tmp_path: Path) -> None:
    secrets = resolve_stack_secrets({}, tmp_path, dev=True)
    assert secrets.admin.value != secrets.audit_hmac.value
    assert {p.name for p in tmp_path.iterdir()} == {"admin_key", "audit_hmac_key"}
    assert resolve_stack_secrets({}, tmp_path, dev=True) == secrets

"""Small pure pieces of libs/stack and libs/cli: restart backoff, the NATS config, the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs.cli.main import build_parser, main
from libs.stack.nats import render_config
from libs.stack.ports import free_port, port_accepts
from libs.stack.supervisor import Backoff


def test_backoff_grows_to_a_cap_and_resets_after_a_stable_run() -> None:
    backoff = Backoff(initial=1.0, factor=2.0, cap=5.0, stable_after=30.0)
    delays, previous = [], None
    for _ in range(5):
        previous = backoff.next_delay(previous, uptime=0.5)
        delays.append(previous)
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff.next_delay(5.0, uptime=31.0) == 1.0


def test_nats_config_fsyncs_every_write() -> None:
    text = render_config(
        host="127.0.0.1", port=4222, store_dir=Path("/d/nats"), pid_file=Path("/d/nats/nats.pid"), monitor_port=8222
    )
    assert 'listen: "127.0.0.1:4222"' in text and 'http: "127.0.0.1:8222"' in text
    assert 'store_dir: "/d/nats"' in text and "sync_interval: always" in text


def test_free_port_is_free() -> None:
    assert not port_accepts("127.0.0.1", free_port())


def test_cli_parses_up_flags() -> None:
    args = build_parser().parse_args(
        ["up", "--data-dir", "d", "--port", "9", "--nats-port", "1", "--pg-port", "2", "--prod", "--provider", "static"]
    )
    assert (args.data_dir, args.port, args.nats_port, args.pg_port) == (Path("d"), 9, 1, 2)
    assert args.prod and args.provider == "static" and callable(args.handler)


def test_cli_without_a_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "up" in capsys.readouterr().out


def test_cli_rejects_an_unknown_provider() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["up", "--provider", "aws"])

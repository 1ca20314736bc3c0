"""One `stoker up` per data dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from libs.stack.datadir import LOCK_FILE, DataDirBusy, exclusive, stop_orphaned_services


def test_a_data_dir_is_held_by_one_run_at_a_time(tmp_path: Path) -> None:
    with exclusive(tmp_path / "d"):
        assert (tmp_path / "d" / LOCK_FILE).read_text().strip() == str(os.getpid())
        with pytest.raises(DataDirBusy, match=f"pid {os.getpid()}"), exclusive(tmp_path / "d"):
            pass
    with exclusive(tmp_path / "d"):  # released on exit
        pass


def test_no_orphans_means_nothing_is_stopped(tmp_path: Path) -> None:
    assert stop_orphaned_services(tmp_path) == 0

"""A NATS server for a benchmark: the one in NATS_URL, or a throwaway embedded one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def nats_server() -> Iterator[str]:
    """Yield a NATS URL with JetStream."""
    if os.environ.get("NATS_URL"):
        yield os.environ["NATS_URL"]
        return
    from libs.stack.nats import EmbeddedNats

    with tempfile.TemporaryDirectory(prefix="stoker-bench-") as tmp, EmbeddedNats(Path(tmp)) as server:
        yield server.url

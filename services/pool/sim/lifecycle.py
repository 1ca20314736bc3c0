"""Pure lifecycle of one simulated rental: its timeline, phase and status texts."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, replace

from services.pool.sim.config import SimConfig

EXTRACTION_ERRORS = (
    "Error response from daemon: failed to register layer: ApplyLayer exit status 1 stdout:  stderr: "
    "write /opt/conda/lib/python3.11/site-packages/torch/lib/libtorch_cuda.so: no space left on device",
    "Error response from daemon: failed to register layer: write "
    "/usr/local/lib/python3.11/dist-packages/nvidia/cudnn/lib/libcudnn_engines_precompiled.so.9: "
    "no space left on device",
    "Error response from daemon: failed to register layer: error creating overlay mount to "
    "/var/lib/docker/overlay2/3f1c9e0b7a2d/merged: too many levels of symbolic links",
)


@dataclass(frozen=True)
class Timeline:
    """When each loading stage of one rental starts/ends (unix seconds); None = never."""

    created_at: float
    pull_start: float
    pull_end: float
    extract_end: float
    running_at: float | None  # None when the rental fails or sticks
    fail_at: float | None = None
    failure_msg: str | None = None
    freeze_at: float | None = None  # stuck: status frozen from here on
    boot_seconds: float = 0.0  # ComfyUI answers at running_at + boot_seconds

    def shifted(self, delta: float) -> Timeline:
        """The same timeline ``delta`` seconds later (resume after a stop while loading)."""
        def s(v: float | None) -> float | None:
            return None if v is None else v + delta
        return replace(self, pull_start=self.pull_start + delta, pull_end=self.pull_end + delta,
                       extract_end=self.extract_end + delta, running_at=s(self.running_at),
                       fail_at=s(self.fail_at), freeze_at=s(self.freeze_at))


def jittered(rng: random.Random, seconds: float, jitter: float) -> float:
    """``seconds`` scaled by a random factor in [1-jitter, 1+jitter]."""
    if jitter <= 0:
        return seconds
    return max(0.0, seconds * rng.uniform(1 - jitter, 1 + jitter))


def draw_timeline(rng: random.Random, config: SimConfig, now: float, *, fail: bool, stuck: bool) -> Timeline:
    """Draw the stage durations of a new rental; ``fail``/``stuck`` are decided by the caller."""
    j = config.timing_jitter
    pull_start = now + jittered(rng, config.schedule_delay, j)
    pull_end = pull_start + jittered(rng, config.pull_seconds, j)
    extract_end = pull_end + jittered(rng, config.extract_seconds, j)
    boot = jittered(rng, config.comfy_boot_delay, j)
    if fail:
        fail_at = pull_end + (extract_end - pull_end) * rng.uniform(0.2, 0.9)
        msg = EXTRACTION_ERRORS[rng.randrange(len(EXTRACTION_ERRORS))]
        return Timeline(now, pull_start, pull_end, extract_end, None, fail_at=fail_at, failure_msg=msg,
                        boot_seconds=boot)
    if stuck:
        freeze_at = pull_start + (pull_end - pull_start) * rng.uniform(0.1, 0.8)
        return Timeline(now, pull_start, pull_end, extract_end, None, freeze_at=freeze_at, boot_seconds=boot)
    return Timeline(now, pull_start, pull_end, extract_end, extract_end, boot_seconds=boot)


def _layers(image: str) -> list[tuple[str, float]]:
    digest = hashlib.sha256(image.encode()).hexdigest()
    sizes = [0.03 + int(digest[i * 8:i * 8 + 4], 16) / 65535 * 4.5 for i in range(5)]
    return [(digest[i * 12 + 3:i * 12 + 15], sizes[i]) for i in range(5)]


def _bar(fraction: float) -> str:
    n = min(49, int(fraction * 50))
    return "[" + "=" * n + ">" + " " * (49 - n) + "]"


def _size(gb: float) -> str:
    return f"{gb:.3g}GB" if gb >= 1 else f"{gb * 1000:.4g}MB"


def loading_message(timeline: Timeline, image: str, now: float) -> str | None:
    """Docker-pull style status text of a loading rental at ``now`` (None before the pull)."""
    if timeline.freeze_at is not None:
        now = min(now, timeline.freeze_at)
    if now < timeline.pull_start:
        return None
    layers = _layers(image)
    total = sum(size for _, size in layers)
    if now < timeline.pull_end:
        stage, start, end = "Downloading", timeline.pull_start, timeline.pull_end
    elif now < timeline.extract_end:
        stage, start, end = "Extracting", timeline.pull_end, timeline.extract_end
    else:
        return f"Status: Downloaded newer image for {image}; starting container"
    done = total * (now - start) / max(end - start, 1e-9)
    for layer, size in layers:
        if done <= size:
            return f"{layer}: {stage} {_bar(done / size)}  {_size(done)}/{_size(size)}"
        done -= size
    layer, size = layers[-1]
    return f"{layer}: {stage} {_bar(1.0)}  {_size(size)}/{_size(size)}"


def log_lines(timeline: Timeline, image: str, now: float) -> list[tuple[float, str]]:
    """The container/daemon log of a rental up to ``now``, as (time, line) pairs."""
    lines: list[tuple[float, str]] = [(timeline.created_at, f"Scheduling instance for image {image}")]
    horizon = now if timeline.freeze_at is None else min(now, timeline.freeze_at)
    if horizon >= timeline.pull_start:
        lines.append((timeline.pull_start, f"Pulling image {image}"))
        for layer, _ in _layers(image):
            lines.append((timeline.pull_start, f"{layer}: Pulling fs layer"))
    if horizon >= timeline.pull_end:
        lines.append((timeline.pull_end, "Digest: sha256:" + hashlib.sha256(image.encode()).hexdigest()))
    if timeline.fail_at is not None and now >= timeline.fail_at:
        lines.append((timeline.fail_at, timeline.failure_msg or "error"))
        return lines
    if timeline.running_at is not None and now >= timeline.running_at:
        lines.append((timeline.running_at, f"Status: Downloaded newer image for {image}"))
        lines.append((timeline.running_at, "Starting container ... onstart script running"))
        ready = timeline.running_at + timeline.boot_seconds
        if now >= ready:
            lines.append((ready, "Starting server"))
            lines.append((ready, "To see the GUI go to: http://0.0.0.0:8188"))
    return lines

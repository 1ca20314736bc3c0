"""Prompt queue, history and the simulated execution loop of one ComfyUI host."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.pool.sim import images
from services.pool.sim.clock import Clock
from services.pool.sim.comfy_files import resolve
from services.pool.sim.comfy_nodes import NODES, NodeEnv, NodeFailure, RunInfo
from services.pool.sim.config import SimConfig
from services.pool.sim.images import Latent
from services.pool.sim.png import encode_png

MAX_HISTORY = 10000
QueueItem = list[Any]  # [number, prompt_id, prompt, extra_data, outputs_to_execute]


class Messenger(Protocol):
    """Where execution messages go (the host's websockets)."""

    def send(self, event: str, data: dict[str, Any], sid: str | None) -> None:
        """Send a JSON message to socket ``sid``, or to every socket when sid is None."""
        ...

    def send_preview(self, png: bytes, meta: dict[str, Any], sid: str | None) -> None:
        """Send a binary preview frame."""
        ...


class Interrupted(Exception):
    """The running prompt was interrupted."""


class HostDied(Exception):
    """The simulated host died mid-job; nothing more is sent."""


def _ms() -> int:
    return int(time.time() * 1000)


@dataclass(order=True)
class _Pending:
    number: float
    seq: int
    item: QueueItem = field(compare=False)


class Executor:
    """Runs queued prompts one at a time in simulated time and keeps the history."""

    def __init__(self, env: NodeEnv, config: Callable[[], SimConfig], clock: Clock, messenger: Messenger,
                 should_die: Callable[[], bool], on_die: Callable[[], None], log: Callable[[str], None]) -> None:
        self.env, self._config, self.clock, self.msg = env, config, clock, messenger
        self._should_die, self._on_die, self._log = should_die, on_die, log
        self.number = 0
        self._seq = itertools.count()
        self.pending: list[_Pending] = []
        self.running: QueueItem | None = None
        self.history: dict[str, dict[str, Any]] = {}
        self._wake = asyncio.Event()
        self._interrupt = False
        self._cache: dict[str, tuple[tuple[Any, ...], dict[str, Any] | None]] = {}
        self.current_node: str | None = None

    # queue ------------------------------------------------------------------
    def remaining(self) -> int:
        """Pending plus running prompts."""
        return len(self.pending) + (1 if self.running is not None else 0)

    def _status(self) -> None:
        self.msg.send("status", {"status": {"exec_info": {"queue_remaining": self.remaining()}}}, None)

    def next_number(self, front: bool) -> int:
        """ComfyUI's per-process prompt counter (negative to jump the queue)."""
        n = self.number
        self.number += 1
        return -n if front else n

    def put(self, item: QueueItem) -> None:
        """Queue a validated prompt."""
        self.pending.append(_Pending(float(item[0]), next(self._seq), item))
        self.pending.sort()
        self._status()
        self._wake.set()

    def queue_view(self) -> dict[str, list[QueueItem]]:
        """``GET /queue`` body."""
        return {"queue_running": [self.running] if self.running is not None else [],
                "queue_pending": [p.item for p in self.pending]}

    def delete_pending(self, prompt_ids: list[str]) -> None:
        """Remove pending prompts (the running one is untouched)."""
        self.pending = [p for p in self.pending if p.item[1] not in prompt_ids]
        self._status()

    def clear_pending(self) -> None:
        """Remove every pending prompt."""
        self.pending = []
        self._status()

    def interrupt(self, prompt_id: str | None = None) -> None:
        """Global interrupt, or only when ``prompt_id`` is the running prompt."""
        if prompt_id is None or (self.running is not None and self.running[1] == prompt_id):
            self._interrupt = True

    def get_history(self, max_items: int | None = None, offset: int = -1) -> dict[str, Any]:
        """``GET /history`` with ComfyUI's max_items/offset semantics."""
        if offset < 0 and max_items is not None:
            offset = len(self.history) - max_items
        out: dict[str, Any] = {}
        for i, (k, v) in enumerate(self.history.items()):
            if i >= offset:
                out[k] = v
                if max_items is not None and len(out) >= max_items:
                    break
        return out

    # execution --------------------------------------------------------------
    async def run_forever(self) -> None:
        """Worker loop: take the lowest-numbered prompt and execute it."""
        while True:
            while not self.pending:
                self._wake.clear()
                await self._wake.wait()
            item = self.pending.pop(0).item
            self.running = item
            self._status()
            try:
                await self._execute(item)
            except HostDied:
                return
            finally:
                self.running = None
            self._status()
            if item[3].get("client_id") is not None:
                self.msg.send("executing", {"node": None, "prompt_id": item[1]}, item[3]["client_id"])

    def _order(self, prompt: dict[str, Any], outputs: list[str]) -> list[str]:
        order: list[str] = []
        seen: set[str] = set()

        def visit(nid: str) -> None:
            if nid in seen:
                return
            seen.add(nid)
            for val in prompt[nid]["inputs"].values():
                if isinstance(val, list) and len(val) == 2 and val[0] in prompt:
                    visit(val[0])
            order.append(nid)
        for o in outputs:
            visit(o)
        return order

    def _signatures(self, prompt: dict[str, Any], order: list[str]) -> dict[str, str]:
        sigs: dict[str, str] = {}
        for nid in order:
            node = prompt[nid]
            parts: dict[str, Any] = {}
            for name, val in node["inputs"].items():
                parts[name] = ["link", sigs[val[0]], val[1]] if isinstance(val, list) and len(val) == 2 else val
            if node["class_type"] == "LoadImage":
                where = resolve(str(node["inputs"].get("image")))
                parts["#file"] = hashlib.sha256((self.env.read_file(*where) if where else None) or b"").hexdigest()
            raw = json.dumps([node["class_type"], parts], sort_keys=True, default=repr)
            sigs[nid] = hashlib.sha256(raw.encode()).hexdigest()
        return sigs

    async def _execute(self, item: QueueItem) -> None:
        number, prompt_id, prompt, extra_data, outputs = item
        client_id: str | None = extra_data.get("client_id")
        cfg = self._config()
        self._interrupt = False
        messages: list[list[Any]] = []
        states: dict[str, dict[str, Any]] = {}

        def add_message(event: str, data: dict[str, Any], broadcast: bool) -> None:
            data = {**data, "timestamp": _ms()}
            messages.append([event, data])
            if client_id is not None or broadcast:
                self.msg.send(event, data, client_id)

        def progress_state(nid: str, value: float, maximum: float, state: str) -> None:
            states[nid] = {"value": value, "max": maximum, "state": state, "node_id": nid, "prompt_id": prompt_id,
                           "display_node_id": nid, "parent_node_id": None, "real_node_id": nid}
            self.msg.send("progress_state", {"prompt_id": prompt_id, "nodes": dict(states)}, client_id)

        def to_client(event: str, data: dict[str, Any]) -> None:
            if client_id is not None:
                self.msg.send(event, data, client_id)

        add_message("execution_start", {"prompt_id": prompt_id}, False)
        order = self._order(prompt, outputs)
        sigs = self._signatures(prompt, order)
        cached = [nid for nid in prompt if nid in sigs and sigs[nid] in self._cache]
        add_message("execution_cached", {"nodes": cached, "prompt_id": prompt_id}, False)
        stepping = [nid for nid in order if nid not in cached and NODES[prompt[nid]["class_type"]].steps]
        runnable = [nid for nid in order if nid not in cached]
        candidates = stepping or runnable
        # Only a job that runs something can take an armed death; a fully cached one leaves it armed.
        die_node = candidates[0] if candidates and self._should_die() else None
        values: dict[str, tuple[Any, ...]] = {}
        ui_outputs: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        executed: list[str] = []
        new_cache: dict[str, tuple[tuple[Any, ...], dict[str, Any] | None]] = {}
        started = self.clock.now()
        status_str, completed = "success", True
        for nid in order:
            node = NODES[prompt[nid]["class_type"]]
            if nid in cached:
                values[nid], ui = self._cache[sigs[nid]]
                new_cache[sigs[nid]] = (values[nid], ui)
                if ui is not None:
                    ui_outputs[nid] = ui
                    meta[nid] = {"node_id": nid, "display_node": nid, "parent_node": None, "real_node_id": nid}
                    to_client("executed", {"node": nid, "display_node": nid, "output": ui, "prompt_id": prompt_id})
                continue
            inputs: dict[str, Any] = {}
            for name, val in prompt[nid]["inputs"].items():
                inputs[name] = values[val[0]][val[1]] if isinstance(val, list) and len(val) == 2 else val
            try:
                if self._interrupt:
                    raise Interrupted
                self.current_node = nid
                progress_state(nid, 0.0, 1.0, "running")
                to_client("executing", {"node": nid, "display_node": nid, "prompt_id": prompt_id})
                result = node.run(self.env, inputs, RunInfo(nid, prompt, extra_data.get("extra_pnginfo") or {}))
                if node.steps is not None:
                    await self._steps(nid, node.steps(inputs), node.seconds(inputs, cfg), result, prompt_id,
                                      client_id, cfg, die_node == nid, progress_state)
                else:
                    if die_node == nid:
                        self._die()
                    await self.clock.sleep(node.seconds(inputs, cfg))
            except Interrupted:
                add_message("execution_interrupted", {"prompt_id": prompt_id, "node_id": nid,
                                                      "node_type": node.name, "executed": list(executed)}, True)
                status_str, completed = "error", False
                break
            except HostDied:
                raise
            except Exception as ex:  # noqa: BLE001 - any node failure is an execution_error
                if isinstance(ex, NodeFailure):
                    etype = ex.exception_type
                elif isinstance(ex, images.OutOfMemory):
                    etype = "torch.OutOfMemoryError"
                else:
                    etype = type(ex).__name__
                add_message("execution_error", {
                    "prompt_id": prompt_id, "node_id": nid, "node_type": node.name, "executed": list(executed),
                    "exception_message": str(ex), "exception_type": etype,
                    "traceback": ['  File "/ComfyUI/execution.py", line 496, in execute\n',
                                  f'  File "/ComfyUI/{node.python_module.replace(".", "/")}.py", in {node.name}\n'],
                    "current_inputs": {k: [repr(v)] for k, v in inputs.items()},
                    "current_outputs": [n for n in order if n in values],
                }, False)
                status_str, completed = "error", False
                break
            outs, ui = result
            values[nid] = outs
            new_cache[sigs[nid]] = (outs, ui)
            executed.append(nid)
            progress_state(nid, 1.0, 1.0, "finished")
            if ui is not None:
                ui_outputs[nid] = ui
                meta[nid] = {"node_id": nid, "display_node": nid, "parent_node": None, "real_node_id": nid}
                to_client("executed", {"node": nid, "display_node": nid, "output": ui, "prompt_id": prompt_id})
        self._cache = new_cache
        if completed:
            add_message("execution_success", {"prompt_id": prompt_id}, False)
        self.current_node = None
        self._log(f"Prompt executed in {self.clock.now() - started:.2f} seconds")
        if len(self.history) >= MAX_HISTORY:
            self.history.pop(next(iter(self.history)))
        self.history[prompt_id] = {
            "prompt": [number, prompt_id, prompt, extra_data, outputs], "outputs": ui_outputs,
            "status": {"status_str": status_str, "completed": completed, "messages": messages}, "meta": meta,
        }

    def _die(self) -> None:
        self._on_die()
        raise HostDied

    async def _steps(self, nid: str, steps: int, per_step: float, result: Any, prompt_id: str,
                     client_id: str | None, cfg: SimConfig, die: bool,
                     progress_state: Callable[[str, float, float, str], None]) -> None:
        latent = result[0][0] if result[0] and isinstance(result[0][0], Latent) else None
        thumb: tuple[int, int, bytes] | None = None
        if latent is not None and cfg.send_previews:
            scale = max(latent.width, latent.height) / 64
            w, h = max(1, int(latent.width / max(scale, 1))), max(1, int(latent.height / max(scale, 1)))
            thumb = (w, h, images.pattern(w, h, 1, latent.key).frames[0])
        for step in range(steps):
            await self.clock.sleep(per_step)
            if die and step >= steps // 2:
                self._die()
            if self._interrupt:
                raise Interrupted
            self.msg.send("progress", {"value": step + 1, "max": steps, "prompt_id": prompt_id, "node": nid}, client_id)
            progress_state(nid, float(step + 1), float(steps), "running")
            if thumb is not None:
                w, h, rgb = thumb
                png = encode_png(w, h, images.fade(rgb, (step + 1) / steps), level=1)
                self.msg.send_preview(png, {"node_id": nid, "prompt_id": prompt_id, "display_node_id": nid,
                                            "parent_node_id": None, "real_node_id": nid, "image_type": "image/png"},
                                      client_id)


def preview_frame(png: bytes, meta: dict[str, Any] | None) -> bytes:
    """Binary websocket frame: type 1 (PNG) or type 4 (with metadata) when ``meta`` is given."""
    if meta is None:
        return struct.pack(">II", 1, 2) + png
    blob = json.dumps(meta).encode()
    return struct.pack(">II", 4, len(blob)) + blob + png

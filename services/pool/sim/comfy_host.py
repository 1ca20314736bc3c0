"""A ComfyUI-compatible HTTP + WebSocket server for one simulated instance."""

from __future__ import annotations

import asyncio
import json
import posixpath
import random
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from services.pool.sim import comfy_files
from services.pool.sim.clock import Clock
from services.pool.sim.comfy_exec import Executor
from services.pool.sim.comfy_nodes import NODES, counter_of
from services.pool.sim.comfy_validate import validate_prompt
from services.pool.sim.comfy_ws import SocketHub
from services.pool.sim.config import SimConfig
from services.pool.sim.market import HostSpec
from services.pool.sim.responses import comfy_json

MODEL_FOLDERS = ["checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision",
                 "style_models", "embeddings", "diffusers", "vae_approx", "controlnet", "gligen", "upscale_models",
                 "custom_nodes", "hypernetworks", "photomaker", "classifiers", "model_patches", "audio_encoders"]
FILE_TYPES = ("output", "input", "temp")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ComfyHost:
    """Serves one rental's ComfyUI on its own loopback port until closed."""

    def __init__(self, spec: HostSpec, config: Callable[[], SimConfig], clock: Clock,
                 should_die: Callable[[], bool], on_die: Callable[[], None], log: Callable[[str], None]) -> None:
        self.spec, self.clock, self._log, self._on_die = spec, clock, log, on_die
        self._rng = random.Random(spec.instance_id * 31 + spec.generation)
        self.store: dict[tuple[str, str, str], bytes] = {}
        self.hub = SocketHub()
        self.executor = Executor(self, config, clock, self.hub, should_die, self._die, log)
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.port = 0
        self.dead = False

    # NodeEnv ------------------------------------------------------------------
    def files(self, folder: str) -> list[str]:
        """Model files of ``folder`` whose download has finished."""
        now = self.clock.now()
        placed = [f"{sub}/{name}" if sub else name for k, sub, name in self.store if k == f"models/{folder}"]
        return sorted({*(name for f, name, ready in self.spec.models if f == folder and now >= ready), *placed})

    def input_files(self) -> list[str]:
        """Input images at the top of the input folder (ComfyUI's LoadImage lists no subfolders)."""
        return [name for kind, sub, name in self.store if kind == "input" and not sub]

    def read_file(self, kind: str, subfolder: str, filename: str) -> bytes | None:
        """Stored file, if any."""
        return self.store.get((kind, subfolder, filename))

    def save_file(self, kind: str, subfolder: str, filename: str, data: bytes) -> None:
        """Store a file."""
        self.store[(kind, subfolder, filename)] = data

    def next_counter(self, kind: str, subfolder: str, prefix: str) -> int:
        """One more than the highest ``{prefix}_NNNNN_.png`` counter in that folder."""
        found = [counter_of(name, prefix) for k, sub, name in self.store if k == kind and sub == subfolder]
        return max([c for c in found if c is not None], default=0) + 1

    def random_letters(self, n: int) -> str:
        """Random lowercase letters (temp file names)."""
        return "".join(self._rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))

    # lifecycle ------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL of this host."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Bind ``port`` (a fresh one when 0 or taken) and start serving; returns the port."""
        app = web.Application(middlewares=[self._boot_gate], client_max_size=100 * 1024 * 1024)
        self._routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((host, port))
        except OSError:  # the port this rental had before a restart is taken now
            sock.bind((host, 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self._tasks = [asyncio.create_task(self.executor.run_forever()), asyncio.create_task(self.hub.publish_forever())]
        return self.port

    def _die(self) -> None:
        """The host dies mid-job: connections drop without a goodbye."""
        self.dead = True
        self.hub.drop_all()
        self._on_die()

    async def close(self) -> None:
        """Stop serving and drop every connection."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass
        self.hub.drop_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # HTTP -----------------------------------------------------------------------
    @web.middleware
    async def _boot_gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.dead or self.clock.now() < self.spec.ready_at:
            return web.Response(status=502, text="502 Bad Gateway\n", content_type="text/plain")
        return await handler(request)

    def _routes(self, app: web.Application) -> None:
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "/system_stats", self.system_stats), ("GET", "/object_info", self.object_info),
            ("GET", "/object_info/{node_class}", self.object_info_one), ("GET", "/models", self.models),
            ("GET", "/models/{folder}", self.model_files), ("GET", "/embeddings", self.embeddings),
            ("GET", "/features", self.features), ("GET", "/extensions", self.extensions),
            ("GET", "/prompt", self.get_prompt), ("POST", "/prompt", self.post_prompt),
            ("GET", "/queue", self.get_queue), ("POST", "/queue", self.post_queue),
            ("POST", "/interrupt", self.interrupt), ("POST", "/free", self.free),
            ("GET", "/history", self.get_history), ("POST", "/history", self.post_history),
            ("GET", "/history/{prompt_id}", self.get_history_one), ("GET", "/view", self.view),
            ("POST", "/upload/image", self.upload_image), ("GET", "/ws", self.websocket),
            ("GET", "/internal/logs", self.logs),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
            app.router.add_route(method, "/api" + path, handler)
        app.router.add_get("/", self.index)
        comfy_files.add_routes(app, lambda: self.store)

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>ComfyUI</title><div id=app></div>", content_type="text/html")

    async def system_stats(self, request: web.Request) -> web.Response:
        vram = self.spec.gpu_ram_mb * 1024 * 1024
        name = self.spec.gpu_name
        full = f"NVIDIA GeForce {name}" if name.startswith("RTX ") and "A6000" not in name else f"NVIDIA {name}"
        return comfy_json({
            "system": {"os": "posix", "ram_total": 135_089_651_712, "ram_free": 120_336_011_264,
                       "comfyui_version": "0.3.64", "required_frontend_version": "1.27.10",
                       "installed_templates_version": "0.1.95", "required_templates_version": "0.1.95",
                       "python_version": "3.11.7 (main, Dec  8 2023, 18:56:58) [GCC 11.4.0]",
                       "pytorch_version": "2.8.0+cu128", "embedded_python": False,
                       "argv": ["main.py", "--listen", "0.0.0.0", "--port", "8188"]},
            "devices": [{"name": f"cuda:{i} {full} : cudaMallocAsync", "type": "cuda", "index": i,
                         "vram_total": vram, "vram_free": vram - 700_000_000, "torch_vram_total": 0,
                         "torch_vram_free": 0} for i in range(self.spec.num_gpus)],
        })

    async def object_info(self, request: web.Request) -> web.Response:
        return comfy_json({name: node.info(self) for name, node in NODES.items()})

    async def object_info_one(self, request: web.Request) -> web.Response:
        node = NODES.get(request.match_info["node_class"])
        return comfy_json({node.name: node.info(self)} if node else {})

    async def models(self, request: web.Request) -> web.Response:
        return comfy_json(MODEL_FOLDERS)

    async def model_files(self, request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        if folder not in MODEL_FOLDERS:
            return web.Response(status=404, text="404: Not Found")
        return comfy_json(self.files(folder))

    async def embeddings(self, request: web.Request) -> web.Response:
        return comfy_json(self.files("embeddings"))

    async def features(self, request: web.Request) -> web.Response:
        return comfy_json({"supports_preview_metadata": True, "max_upload_size": 104857600})

    async def extensions(self, request: web.Request) -> web.Response:
        return comfy_json([])

    async def logs(self, request: web.Request) -> web.Response:
        return comfy_json("Starting server\n\nTo see the GUI go to: http://0.0.0.0:8188\n")

    async def get_prompt(self, request: web.Request) -> web.Response:
        return comfy_json({"exec_info": {"queue_remaining": self.executor.remaining()}})

    async def post_prompt(self, request: web.Request) -> web.Response:
        try:
            data = json.loads(await request.read())
            if not isinstance(data, dict):
                raise ValueError("body is not an object")
        except ValueError:
            return web.Response(status=500, text="500 Internal Server Error\n\nServer got itself in trouble",
                                content_type="text/plain")
        if "number" in data:
            number: float | int = float(data["number"])
        else:
            number = self.executor.next_number(bool(data.get("front")))
        if "prompt" not in data:
            err = {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided",
                   "extra_info": {}}
            return comfy_json({"error": err, "node_errors": {}}, status=400)
        prompt = data["prompt"]
        prompt_id = str(data.get("prompt_id") or uuid.uuid4())
        targets = data.get("partial_execution_targets")
        result = validate_prompt(prompt, self, targets if isinstance(targets, list) else None)
        extra_data = data.get("extra_data")
        extra: dict[str, Any] = extra_data if isinstance(extra_data, dict) else {}
        if "client_id" in data:
            extra["client_id"] = data["client_id"]
        if result.error is not None:
            return comfy_json({"error": result.error, "node_errors": result.node_errors}, status=400)
        self.executor.put([number, prompt_id, prompt, extra, result.good_outputs])
        return comfy_json({"prompt_id": prompt_id, "number": number, "node_errors": result.node_errors})

    async def _body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        try:
            data = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    async def get_queue(self, request: web.Request) -> web.Response:
        return comfy_json(self.executor.queue_view())

    async def post_queue(self, request: web.Request) -> web.Response:
        data = await self._body(request)
        if data.get("clear"):
            self.executor.clear_pending()
        if isinstance(data.get("delete"), list):
            self.executor.delete_pending([str(x) for x in data["delete"]])
        return web.Response(status=200)

    async def interrupt(self, request: web.Request) -> web.Response:
        data = await self._body(request)
        self.executor.interrupt(str(data["prompt_id"]) if data.get("prompt_id") else None)
        return web.Response(status=200)

    async def free(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def get_history(self, request: web.Request) -> web.Response:
        max_items = request.query.get("max_items")
        offset = int(request.query.get("offset", -1))
        return comfy_json(self.executor.get_history(int(max_items) if max_items else None, offset))

    async def get_history_one(self, request: web.Request) -> web.Response:
        pid = request.match_info["prompt_id"]
        entry = self.executor.history.get(pid)
        return comfy_json({pid: entry} if entry is not None else {})

    async def post_history(self, request: web.Request) -> web.Response:
        data = await self._body(request)
        if data.get("clear"):
            self.executor.history.clear()
        for pid in data.get("delete") or []:
            self.executor.history.pop(str(pid), None)
        return web.Response(status=200)

    async def view(self, request: web.Request) -> web.Response:
        filename = request.query.get("filename")
        if not filename:
            return web.Response(status=404)
        if filename.startswith("/") or ".." in filename:
            return web.Response(status=400)
        kind = request.query.get("type", "output")
        if kind not in FILE_TYPES:
            return web.Response(status=400)
        subfolder = request.query.get("subfolder", "")
        base = f"/ComfyUI/{kind}"
        if posixpath.commonpath((base, posixpath.normpath(posixpath.join(base, subfolder)))) != base:
            return web.Response(status=403)
        sub = posixpath.normpath(subfolder) if subfolder else ""
        data = self.store.get((kind, "" if sub == "." else sub, filename))
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="image/png",
                            headers={"Content-Disposition": f'filename="{filename}"'})

    async def upload_image(self, request: web.Request) -> web.Response:
        post = await request.post()
        image = post.get("image")
        if not isinstance(image, web.FileField):
            return web.Response(status=400)
        kind = str(post.get("type") or "input")
        if kind not in FILE_TYPES:
            return web.Response(status=400)
        subfolder = str(post.get("subfolder") or "")
        name = posixpath.basename(str(image.filename))
        if not str(post.get("overwrite") or "").lower() == "true":
            stem, dot, ext = name.rpartition(".")
            i = 1
            while (kind, subfolder, name) in self.store:
                name = f"{stem} ({i}){dot}{ext}" if dot else f"{ext} ({i})"
                i += 1
        self.store[(kind, subfolder, name)] = image.file.read()
        return comfy_json({"name": name, "subfolder": subfolder, "type": kind})

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        return await self.hub.handle(request, self.executor)

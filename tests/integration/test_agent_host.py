"""The agent against local HTTP servers: model downloads (resume, checksum, tokens, disk) and its proxy."""

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from services.agent.download import DownloadError, Downloader
from services.agent.files import DiskFiles
from services.agent.models import ModelFile, TokenRule
from services.agent.runtime import Agent
from services.agent.web import build_app

DATA = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(DATA).hexdigest()
TOKEN = "hf_tok_0123456789abcdef"
SECRET = "s3cret-instance-0123456789"


class ModelServer:
    """Serves DATA under several behaviours and records what each request carried."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None, str | None]] = []  # (host, path, Authorization, Range)
        self.cut_once = True
        self.port = 0

    def _range(self, request: web.Request) -> int:
        value = request.headers.get("Range", "")
        return int(value.removeprefix("bytes=").rstrip("-")) if value.startswith("bytes=") else 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.host.split(":")[0], request.path, request.headers.get("Authorization"),
                          request.headers.get("Range")))
        kind = request.match_info["kind"]
        if kind == "redirect":
            raise web.HTTPFound(f"http://localhost:{self.port}/ok/m.safetensors",
                                headers={"X-Linked-Etag": f'"{SHA}"', "X-Linked-Size": str(len(DATA))})
        start = self._range(request)
        headers = {"X-Linked-Etag": f'"{"0" * 64 if kind == "bad" else SHA}"'}
        resp = web.StreamResponse(status=206 if start else 200, headers=headers)
        if start:
            resp.headers["Content-Range"] = f"bytes {start}-{len(DATA) - 1}/{len(DATA)}"
        resp.content_length = len(DATA) - start
        await resp.prepare(request)
        if kind == "flaky" and self.cut_once:
            self.cut_once = False
            await resp.write(DATA[:len(DATA) // 3])
            assert request.transport is not None
            request.transport.close()  # the connection drops mid-file
            return resp
        await resp.write(DATA[start:])
        return resp


@pytest.fixture
async def models() -> AsyncIterator[ModelServer]:
    server = ModelServer()
    app = web.Application()
    app.router.add_get("/{kind}/{name}", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield server
    finally:
        await runner.cleanup()


async def _nosleep(_: float) -> None:
    return None


def downloader(session: aiohttp.ClientSession, free: Callable[[Path], int] = lambda _: 10 ** 12) -> Downloader:
    return Downloader(session, tokens={"HF_TOKEN": TOKEN}, rules=(TokenRule("HF_TOKEN", ("127.0.0.1",)),),
                      free_space=free, reserve_bytes=0, attempts=3, backoff=0.0, sleep=_nosleep)


def model(server: ModelServer, kind: str) -> ModelFile:
    return ModelFile(folder="checkpoints", name="m.safetensors",
                     url=f"http://127.0.0.1:{server.port}/{kind}/m.safetensors?token=querysecret")


@pytest.mark.timeout(20)
async def test_interrupted_download_resumes_and_checks_the_sum(models: ModelServer, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    progress: list[int] = []
    async with aiohttp.ClientSession() as session:
        name, size = await downloader(session).fetch(model(models, "flaky"), tmp_path,
                                                     lambda done, total: progress.append(done))
    assert (name, size) == ("m.safetensors", len(DATA))
    assert (tmp_path / "m.safetensors").read_bytes() == DATA
    ranges = [r for _, _, _, r in models.seen]
    assert ranges[0] is None and ranges[1] == f"bytes={len(DATA) // 3}-"  # the second request resumed
    assert progress[-1] == len(DATA)
    assert not list(tmp_path.glob(".*.part"))
    assert TOKEN not in caplog.text and "querysecret" not in caplog.text


@pytest.mark.timeout(20)
async def test_checksum_mismatch_fails_and_deletes(models: ModelServer, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(DownloadError) as err:
            await downloader(session).fetch(model(models, "bad"), tmp_path, lambda d, t: None)
    assert "checksum mismatch" in str(err.value) and not err.value.retry
    assert not any(tmp_path.iterdir())


@pytest.mark.timeout(20)
async def test_token_goes_only_to_its_own_host(models: ModelServer, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with aiohttp.ClientSession() as session:
        await downloader(session).fetch(model(models, "redirect"), tmp_path, lambda d, t: None)
    auth = {(host, path): a for host, path, a, _ in models.seen}
    assert auth[("127.0.0.1", "/redirect/m.safetensors")] == f"Bearer {TOKEN}"
    assert auth[("localhost", "/ok/m.safetensors")] is None  # redirected to another host: no token
    assert (tmp_path / "m.safetensors").read_bytes() == DATA
    assert TOKEN not in caplog.text


@pytest.mark.timeout(20)
async def test_download_that_does_not_fit_is_refused_before_it_starts(models: ModelServer, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(DownloadError) as err:
            await downloader(session, free=lambda _: len(DATA) // 2).fetch(model(models, "ok"), tmp_path,
                                                                          lambda d, t: None)
    assert "not enough disk" in str(err.value) and not err.value.retry
    assert not (tmp_path / "m.safetensors").exists()


# --- the agent's HTTP face ----------------------------------------------------------------

class LocalComfy:
    """A ComfyUI stand-in on loopback (the agent's Comfy port)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.exits: Callable[[int | None], None] | None = None

    async def start(self, on_exit: Callable[[int | None], None]) -> None:
        self.exits = on_exit

    def log_tail(self, lines: int) -> list[str]:
        return ["Starting server", "To see the GUI go to: http://127.0.0.1:18188"][-lines:]

    async def stop(self) -> None:
        return None


async def _upstream() -> tuple[web.AppRunner, str, list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"system": {"comfyui_version": "0.3.64"}, "devices": []})

    async def echo(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"method": request.method, "query": request.query_string,
                                  "body": (await request.read()).decode()})

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        await sock.send_str('{"type": "status"}')
        async for msg in sock:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await sock.send_str("echo:" + msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await sock.send_bytes(msg.data[::-1])
        return sock

    app = web.Application()
    app.router.add_get("/system_stats", stats)
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/ws", ws)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}", seen  # type: ignore[union-attr]


@pytest.fixture
async def agent_url(tmp_path: Path) -> AsyncIterator[tuple[str, Agent, list[dict[str, Any]]]]:
    upstream, comfy_url, seen = await _upstream()
    async with aiohttp.ClientSession() as session:
        (tmp_path / "models" / "checkpoints").mkdir(parents=True)
        (tmp_path / "input").mkdir()
        (tmp_path / "input" / "example.png").write_bytes(b"shipped with the image")
        (tmp_path / "models" / "checkpoints" / "sd15.safetensors").write_bytes(b"x" * 10)
        agent = Agent(secret=SECRET, models=[ModelFile(folder="checkpoints", name="sd15.safetensors")],
                      comfy=LocalComfy(comfy_url), files=DiskFiles(tmp_path), fetcher=downloader(session),
                      session=session, health_every_s=0.02)
        runner = web.AppRunner(build_app(agent))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        await agent.start()
        try:
            yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}", agent, seen  # type: ignore[union-attr]
        finally:
            await agent.stop()
            await runner.cleanup()
            await upstream.cleanup()


AUTH = {"Authorization": f"Bearer {SECRET}"}


@pytest.mark.timeout(20)
async def test_nothing_answers_without_the_secret(agent_url: tuple[str, Agent, list[dict[str, Any]]]) -> None:
    url, _, _ = agent_url
    async with aiohttp.ClientSession() as s:
        for method, path in [("GET", "/agent/status"), ("GET", "/agent/logs"), ("GET", "/system_stats"),
                             ("POST", "/prompt"), ("PUT", "/agent/files/input/a.png"), ("GET", "/nope"),
                             ("DELETE", "/agent/files"), ("DELETE", "/agent/files/input/a.png")]:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": SECRET}):
                async with s.request(method, url + path, headers=headers) as resp:
                    assert resp.status == 401, (method, path, headers)
                    assert (await resp.json())["error"]["code"] == "UNAUTHORIZED"
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await s.ws_connect(url + "/ws?clientId=x")


@pytest.mark.timeout(20)
async def test_status_proxy_and_files(agent_url: tuple[str, Agent, list[dict[str, Any]]], tmp_path: Path) -> None:
    url, agent, seen = agent_url
    async with aiohttp.ClientSession(headers=AUTH) as s:
        async def ready() -> dict[str, Any]:
            while True:
                async with s.get(url + "/agent/status") as resp:
                    body = await resp.json()
                if body["phase"] == "ready":
                    return body
                await asyncio.sleep(0.02)
        status = await asyncio.wait_for(ready(), 5)
        assert status["comfyui_version"] == "0.3.64" and status["models"] == {"checkpoints": ["sd15.safetensors"]}
        assert status["disk_free_bytes"] > 0 and status["files"][0]["state"] == "done"
        async with s.post(url + "/echo?a=1", data=b"hello") as resp:
            assert (await resp.json()) == {"method": "POST", "query": "a=1", "body": "hello"}
        assert "Authorization" not in seen[-1]  # the secret stops at the agent
        ws = await s.ws_connect(url + "/ws?clientId=c1")
        assert (await ws.receive_str()) == '{"type": "status"}'
        await ws.send_str("hi")
        assert (await ws.receive_str()) == "echo:hi"
        await ws.send_bytes(b"\x00\x01")
        assert (await ws.receive_bytes()) == b"\x01\x00"
        await ws.close()
        async with s.put(url + "/agent/files/input/t1/a.png", data=b"png") as resp:
            assert resp.status == 201
        assert (tmp_path / "input" / "t1" / "a.png").read_bytes() == b"png"
        async with s.put(url + "/agent/files/loras/face.safetensors", data=b"lora") as resp:
            assert resp.status == 201
        assert (tmp_path / "models" / "loras" / "face.safetensors").exists()
        for bad in ("input/..%2Fescape.png", "input/a/../../b.png", "nope/x.png", "input//x.png"):
            async with s.put(url + "/agent/files/" + bad, data=b"x") as resp:
                assert resp.status in (400, 404), bad
                if resp.status == 400:
                    assert (await resp.json())["error"]["code"] == "BAD_PATH"
        (tmp_path / "output" / "sub").mkdir(parents=True)
        (tmp_path / "output" / "sub" / "o.png").write_bytes(b"out")
        (tmp_path / "output" / "p.png").write_bytes(b"p")
        async with s.get(url + "/agent/files/output/sub/o.png") as resp:
            assert await resp.read() == b"out"
        async with s.delete(url + "/agent/files/output/sub/o.png") as resp:
            assert (await resp.json()) == {"removed": ["output/sub/o.png"]}
        assert not (tmp_path / "output" / "sub").exists()  # the emptied subfolder went too
        async with s.delete(url + "/agent/files/output/sub/o.png") as resp:
            assert (await resp.json()) == {"removed": []}  # idempotent
        async with s.delete(url + "/agent/files") as resp:
            assert (await resp.json()) == {"removed": ["input/t1/a.png", "output/p.png"]}
        assert not (tmp_path / "input" / "t1").exists() and (tmp_path / "input" / "example.png").exists()
        assert (tmp_path / "models" / "loras" / "face.safetensors").exists()  # never models
        async with s.get(url + "/agent/logs?tail=50") as resp:
            logs = await resp.json()
        assert any("phase ready" in line for line in logs["agent"]) and logs["comfyui"][0] == "Starting server"
        async with s.get(url + "/agent/logs?tail=x") as resp:
            assert resp.status == 400 and (await resp.json())["error"]["code"] == "VALIDATION_FAILED"


@pytest.mark.timeout(30)
async def test_pinned_comfyui_install_unpacks_the_release_tarball(tmp_path: Path) -> None:
    import io
    import tarfile

    from services.agent.comfy import install_commands

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in [("ComfyUI-0.3.64/main.py", b"print('comfy')\n"), ("ComfyUI-0.3.64/requirements.txt", b"")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

    async def tarball(request: web.Request) -> web.Response:
        return web.Response(body=buf.getvalue())

    app = web.Application()
    app.router.add_get("/archive.tar.gz", tarball)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/archive.tar.gz"  # type: ignore[union-attr]
        fetch = install_commands(tmp_path / "ComfyUI")[0]
        assert fetch[-2].endswith("v0.3.64.tar.gz")
        proc = await asyncio.create_subprocess_exec(*fetch[:-2], url, str(tmp_path / "ComfyUI"))
        assert await proc.wait() == 0
    finally:
        await runner.cleanup()
    assert (tmp_path / "ComfyUI" / "main.py").read_bytes() == b"print('comfy')\n"


@pytest.mark.timeout(20)
async def test_agent_answers_while_it_installs_comfyui_and_says_why_it_failed(tmp_path: Path) -> None:
    gate = asyncio.Event()

    async def install() -> None:
        await gate.wait()
        raise RuntimeError("installing ComfyUI v0.3.64 failed at `python -c` (exit 1); see GET /agent/logs")

    async with aiohttp.ClientSession() as session:
        agent = Agent(secret=SECRET, models=[], comfy=LocalComfy("http://127.0.0.1:9"), files=DiskFiles(tmp_path),
                      fetcher=downloader(session), session=session, health_every_s=0.02,
                      prepare=("installing ComfyUI v0.3.64", install))
        await agent.start()
        await asyncio.sleep(0.05)
        status = await agent.status()
        assert (status["phase"], status["reason"]) == ("booting", "installing ComfyUI v0.3.64")
        gate.set()
        while agent.state.phase != "failed":
            await asyncio.sleep(0.01)
        assert "installing ComfyUI v0.3.64 failed" in agent.state.reason and "/agent/logs" in agent.state.reason
        await agent.stop()


FAKE_COMFY = """
import http.server, json, sys
port = int(sys.argv[sys.argv.index("--port") + 1])
assert sys.argv[sys.argv.index("--listen") + 1] == "127.0.0.1"
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"system": {"comfyui_version": "fake-1"}}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
print("Starting server", flush=True)
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


@pytest.mark.timeout(40)
async def test_comfyui_is_supervised_restarted_and_logged(tmp_path: Path) -> None:
    import socket

    from services.agent.comfy import ComfyProcess

    (tmp_path / "ComfyUI").mkdir()
    (tmp_path / "ComfyUI" / "main.py").write_text(FAKE_COMFY)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    comfy = ComfyProcess(tmp_path / "ComfyUI", port, tmp_path / "logs" / "comfyui.log", backoff=0.1)
    async with aiohttp.ClientSession() as session:
        agent = Agent(secret=SECRET, models=[], comfy=comfy, files=DiskFiles(tmp_path / "ComfyUI"),
                      fetcher=downloader(session), session=session, health_every_s=0.05)
        await agent.start()
        try:
            async def phase(want: str) -> None:
                while agent.state.phase != want:
                    await asyncio.sleep(0.02)
            await asyncio.wait_for(phase("ready"), 20)
            assert agent.state.comfyui_version == "fake-1"
            first = comfy._proc
            assert first is not None
            first.kill()  # ComfyUI dies
            await asyncio.wait_for(phase("starting_comfyui"), 10)
            await asyncio.wait_for(phase("ready"), 20)
            assert comfy._proc is not first and agent.state.restarts == 0
            assert comfy.log_tail(10).count("Starting server") == 2  # both runs logged to the file
        finally:
            await agent.stop()
        assert comfy._proc is not None and comfy._proc.returncode is not None  # stopped with the agent

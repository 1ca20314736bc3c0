"""Generation, output, muse, gallery and usage endpoints against the real stack: NATS, PostgreSQL, the
marketplace simulator, the real pool and generation services and the gateway.

One stack for the module (one Ready simulated ComfyUI host); alice and bob are users, admin uses the key.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import msgspec
import pytest
import pytest_asyncio
from aiohttp import ClientResponse, test_utils
from PIL import Image

from services.gateway.schemas import generation as g
from services.gateway.schemas import library as lib
from services.gateway.testing import (
    ADMIN,
    bearer,
    eventually,
    gateway_client,
    gateway_env,
    user_token,
)
from services.generation.testing import Stack as GenStack
from services.generation.testing import gen_stack

pytestmark = pytest.mark.timeout(60)
TXT2IMG = {"template": "txt2img", "prompt": "a red fox", "steps": 6, "width": 128, "height": 96, "seed": 7,
           "preset": "low"}
SMOKE = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 0xFF0000}},
         "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "byo"}}}


class Stack(NamedTuple):
    client: test_utils.TestClient
    gen: GenStack
    alice: dict[str, str]
    bob: dict[str, str]
    alice_id: str
    bob_id: str


@pytest_asyncio.fixture(scope="module")
async def stack(nats_url: str, database_url: str) -> AsyncIterator[Stack]:
    async with asyncio.timeout(60), gen_stack(nats_url, instances=1) as gen, \
            gateway_client(gateway_env(nats_url, database_url, STOKER_POOL_ID=gen.pool_id)) as client:
        alice_id, alice = await user_token(client, "alice-" + gen.pool_id)
        bob_id, bob = await user_token(client, "bob-" + gen.pool_id)
        yield Stack(client, gen, bearer(alice), bearer(bob), alice_id, bob_id)


async def body(resp: ClientResponse, status: int) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def submit(st: Stack, payload: dict[str, Any], who: dict[str, str] | None = None) -> dict[str, Any]:
    headers = st.alice if who is None else who
    return await body(await st.client.post("/api/v1/generations", json=payload, headers=headers), 201)


async def finished(st: Stack, job_id: str, who: dict[str, str] | None = None) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        headers = st.alice if who is None else who
        job = await body(await st.client.get(f"/api/v1/generations/{job_id}", headers=headers), 200)
        return job if job["status"] in ("completed", "failed", "cancelled") else None
    done: dict[str, Any] = await eventually(probe, timeout=30)
    return done


def assert_error(data: dict[str, Any], code: str) -> None:
    assert set(data) == {"error"} and data["error"]["code"] == code and data["error"]["message"]


class Sse:
    """A Server-Sent Events reader collecting (kind, data) pairs in the background."""

    def __init__(self, resp: ClientResponse) -> None:
        self.resp, self.events = resp, []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        kind = ""
        while True:
            line = (await self.resp.content.readline()).decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                self.events.append((kind, msgspec.json.decode(line[6:])))

    def of(self, job_id: str) -> list[tuple[str, dict[str, Any]]]:
        return [(k, d) for k, d in self.events if d.get("job_id") == job_id]

    async def close(self) -> None:
        self.task.cancel()
        self.resp.close()


async def test_a_txt2img_generation_end_to_end_with_sse_progress_and_the_png(stack: Stack) -> None:
    st = stack
    alice_sse = Sse(await st.client.get("/api/v1/stream", headers=st.alice))
    bob_sse = Sse(await st.client.get("/api/v1/stream", headers=st.bob))
    admin_sse = Sse(await st.client.get("/api/v1/stream", headers=ADMIN))
    try:
        await eventually(lambda: alice_sse.events and bob_sse.events and admin_sse.events, timeout=5)  # snapshots
        created = await submit(st, TXT2IMG)
        msgspec.convert(created, g.GenerationCreated)
        job_id = created["id"]
        assert created["created"] and created["estimated_cost"] > 0 and created["generation"]["params"]["seed"] == 7

        await eventually(lambda: any(d.get("type") == "GenerationCompleted" for _, d in alice_sse.of(job_id)), 30)
        mine = alice_sse.of(job_id)
        kinds = [k for k, _ in mine]
        progress = [d for k, d in mine if k == "progress"]
        steps = [d["step"] for d in progress if d["kind"] == "progress"]
        assert steps and steps == sorted(steps) and max(steps) <= 6
        assert [d["seq"] for d in progress] == sorted(d["seq"] for d in progress)
        types = [d["type"] for k, d in mine if k == "job"]
        assert types[0] == "GenerationRequested" and "GenerationCompleted" in types
        assert kinds.index("progress") < len(kinds) - 1 - kinds[::-1].index("job")  # progress before the end
        last = next(d for k, d in mine if k == "job" and d["type"] == "GenerationCompleted")
        assert last["generation"]["status"] == "completed" and last["generation"]["outputs"]
        assert admin_sse.of(job_id) and not bob_sse.of(job_id)  # the owner and admins only
    finally:
        for sse in (alice_sse, bob_sse, admin_sse):
            await sse.close()

    job = await finished(st, job_id)
    msgspec.convert(job, g.Generation)
    assert job["status"] == "completed" and job["cost"] is not None and job["error"] is None
    [out] = job["outputs"]
    assert out["url"] == f"/api/v1/outputs/{out['id']}" and out["content_type"] == "image/png"
    resp = await st.client.get(out["url"], headers=st.alice)
    assert resp.status == 200 and resp.headers["Content-Type"] == "image/png"
    data = await resp.read()
    assert len(data) == out["size"] and resp.headers["ETag"] == f'"{out["sha256"]}"'
    assert resp.headers["Content-Disposition"].startswith("inline; filename=")
    assert "sandbox" in resp.headers["Content-Security-Policy"]
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.size == (128, 96)
    resp = await st.client.get(out["url"], headers={**st.alice, "If-None-Match": resp.headers["ETag"]})
    assert resp.status == 304

    # Someone else's generation and output do not exist; an admin sees both.
    assert_error(await body(await st.client.get(f"/api/v1/generations/{job_id}", headers=st.bob), 404), "NOT_FOUND")
    assert_error(await body(await st.client.get(out["url"], headers=st.bob), 404), "NOT_FOUND")
    assert (await body(await st.client.get(f"/api/v1/generations/{job_id}", headers=ADMIN), 200))["id"] == job_id
    assert (await st.client.get(out["url"], headers=ADMIN)).status == 200
    # Without a credential: 401.
    assert (await st.client.get(out["url"])).status == 401
    assert (await st.client.get(f"/api/v1/generations/{job_id}")).status == 401


async def test_own_workflows_and_idempotency(stack: Stack) -> None:
    st = stack
    key = {"Idempotency-Key": "retry-" + st.alice_id}
    first = await body(await st.client.post("/api/v1/generations", json={"workflow": SMOKE},
                                            headers={**st.alice, **key}), 201)
    again = await body(await st.client.post("/api/v1/generations", json={"workflow": SMOKE},
                                            headers={**st.alice, **key}), 200)
    assert again["id"] == first["id"] and not again["created"]
    same = await body(await st.client.post("/api/v1/generations", json={"workflow": SMOKE,
                                                                        "idempotency_key": key["Idempotency-Key"]},
                                           headers=st.alice), 200)
    assert same["id"] == first["id"]
    resp = await st.client.post("/api/v1/generations", json={"workflow": SMOKE, "idempotency_key": "other"},
                                headers={**st.alice, **key})
    assert_error(await body(resp, 422), "VALIDATION_FAILED")
    job = await finished(st, first["id"])
    assert job["status"] == "completed" and job["template"] is None
    image = Image.open(io.BytesIO(await (await st.client.get(job["outputs"][0]["url"], headers=st.alice)).read()))
    assert image.size == (64, 48) and image.convert("RGB").getpixel((0, 0)) == (255, 0, 0)


async def test_validation_errors_say_what_is_wrong(stack: Stack) -> None:
    st = stack

    async def refused(payload: Any, status: int = 422, who: dict[str, str] | None = None) -> dict[str, Any]:
        resp = await st.client.post("/api/v1/generations", json=payload, headers=st.alice if who is None else who)
        data = await body(resp, status)
        assert set(data) == {"error"}
        return data["error"]

    assert "bogus" in (await refused({**TXT2IMG, "bogus": 1}))["message"]  # unknown field
    assert "template" in (await refused({**TXT2IMG, "template": "nope"}))["message"]
    error = await refused({**TXT2IMG, "width": 100})
    assert "width" in error["message"] and "multiple of 8" in error["message"]
    error = await refused({"template": "txt2img", "frames": 4, "prompt": "x"})  # a parameter of another template
    assert "frames" in error["message"]
    assert "prompt" in (await refused({"template": "txt2img"}))["message"]
    assert (await refused({"template": "txt2img", "prompt": 5}))["code"] == "VALIDATION_FAILED"
    broken = {**SMOKE, "2": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "x"}}}
    error = await refused({"workflow": broken})
    assert "node 2 (SaveImage)" in error["message"]
    [problem] = error["details"]["node_errors"]["2"]["errors"]
    assert problem["type"] == "bad_linked_input" and "'9'" in problem["details"]
    assert "either a template" in (await refused({**TXT2IMG, "workflow": SMOKE}))["message"]
    assert (await refused("not json", 422))["code"] == "VALIDATION_FAILED"
    resp = await st.client.post("/api/v1/generations", data=b"{",
                                headers={**st.alice, "Content-Type": "application/json"})
    assert_error(await body(resp, 400), "VALIDATION_FAILED")
    assert (await refused(TXT2IMG, 401, who={}))["code"] == "AUTH_REQUIRED"
    assert (await refused(TXT2IMG, 401, who={"Authorization": "Bearer stk_" + "A" * 43}))["code"] == "AUTH_REQUIRED"
    resp = await st.client.post("/api/v1/generations/estimate", json={**TXT2IMG, "width": 4096}, headers=st.alice)
    assert "width" in (await body(resp, 422))["error"]["message"]


async def test_listing_paging_cancelling_and_estimates(stack: Stack) -> None:
    st = stack
    estimate = await body(await st.client.post("/api/v1/generations/estimate", json=TXT2IMG, headers=st.alice), 200)
    msgspec.convert(estimate, g.Estimate)
    assert estimate["estimated_cost"] > 0 and estimate["checkpoint"] == "sd15.safetensors"
    templates = await body(await st.client.get("/api/v1/templates", headers=st.bob), 200)
    msgspec.convert(templates, g.TemplateList)
    assert {"txt2img", "img2img", "video"} <= {t["name"] for t in templates["templates"]}
    assert templates["checkpoints"] == ["sd15.safetensors"]

    slow = await submit(st, {"template": "txt2img", "prompt": "slow", "steps": 150, "width": 1024, "height": 2048},
                        st.bob)
    assert_error(await body(await st.client.post(f"/api/v1/generations/{slow['id']}/cancel", headers=st.alice), 404),
                 "NOT_FOUND")
    cancelled = await body(await st.client.post(f"/api/v1/generations/{slow['id']}/cancel", headers=st.bob), 200)
    assert cancelled["status"] == "cancelled" or cancelled["cancel_requested"]
    job = await finished(st, slow["id"], st.bob)
    assert job["status"] == "cancelled" and job["error"]["reason"] == "cancelled"

    mine = await body(await st.client.get("/api/v1/generations", headers=st.alice), 200)
    msgspec.convert(mine, g.GenerationPage)
    assert mine["items"] and {j["user_id"] for j in mine["items"]} == {st.alice_id}
    page = await body(await st.client.get("/api/v1/generations", params={"limit": "1"}, headers=st.alice), 200)
    assert len(page["items"]) == 1 and page["next"]
    rest = await body(await st.client.get("/api/v1/generations", params={"before": page["next"]}, headers=st.alice),
                      200)
    assert page["items"][0]["id"] not in {j["id"] for j in rest["items"]}
    assert [j["id"] for j in (await body(await st.client.get(
        "/api/v1/generations", params={"status": "cancelled"}, headers=st.bob), 200))["items"]] == [slow["id"]]
    resp = await st.client.get("/api/v1/generations", params={"user_id": st.bob_id}, headers=st.alice)
    assert_error(await body(resp, 403), "FORBIDDEN")
    theirs = await body(await st.client.get("/api/v1/generations", params={"user_id": st.bob_id}, headers=ADMIN), 200)
    assert [j["id"] for j in theirs["items"]] == [slow["id"]]
    assert_error(await body(await st.client.get("/api/v1/generations", params={"limit": "0"}, headers=st.alice), 422),
                 "VALIDATION_FAILED")


async def test_muses_crud_import_export_and_use(stack: Stack) -> None:
    st = stack
    spec = {"name": "Ada", "hair": {"color": "red"}, "prompt_template": "{prompt}, {hair}"}
    muse = await body(await st.client.post("/api/v1/muses", json=spec, headers=st.alice), 201)
    msgspec.convert(muse, lib.Muse)
    assert muse["version"] == 1 and muse["muse"]["hair"] == {"color": "red"}
    url = f"/api/v1/muses/{muse['id']}"
    assert (await body(await st.client.get(url, headers=st.alice), 200))["id"] == muse["id"]
    assert_error(await body(await st.client.get(url, headers=st.bob), 404), "NOT_FOUND")
    assert_error(await body(await st.client.put(url, json=spec, headers=st.bob), 404), "NOT_FOUND")
    updated = await body(await st.client.put(url, json={**spec, "hair": {"color": "black"}}, headers=st.alice), 200)
    assert updated["version"] == 2 and updated["muse"]["hair"] == {"color": "black"}
    assert "bogus" in (await body(await st.client.post("/api/v1/muses", json={**spec, "bogus": 1}, headers=st.alice),
                                  422))["error"]["message"]
    assert "{prompt}" in (await body(await st.client.post("/api/v1/muses", json={**spec, "prompt_template": "x"},
                                                          headers=st.alice), 422))["error"]["message"]

    doc = await body(await st.client.get(url + "/export", headers=st.alice), 200)
    assert doc["format"] == "stoker.muse" and doc["muse"]["name"] == "Ada"
    copy = await body(await st.client.post("/api/v1/muses/import", json=doc, headers=st.bob), 201)
    assert copy["id"] != muse["id"] and copy["user_id"] == st.bob_id and copy["muse"] == updated["muse"]
    assert (await st.client.post("/api/v1/muses/import", json={**doc, "version": 9}, headers=st.bob)).status == 422
    listed = await body(await st.client.get("/api/v1/muses", headers=st.alice), 200)
    assert muse["id"] in {m["id"] for m in listed["items"]} and copy["id"] not in {m["id"] for m in listed["items"]}

    job = await submit(st, {"template": "txt2img", "prompt": "portrait", "muse_id": muse["id"], "steps": 2,
                            "width": 64, "height": 64})
    assert job["generation"]["muse_id"] == muse["id"] and "black" in job["generation"]["params"]["prompt"]
    resp = await st.client.post("/api/v1/generations", json={**TXT2IMG, "muse_id": copy["id"]}, headers=st.alice)
    assert_error(await body(resp, 404), "NOT_FOUND")  # bob's muse
    assert (await finished(st, job["id"]))["status"] == "completed"

    assert (await body(await st.client.delete(url, headers=st.bob), 404))["error"]["code"] == "NOT_FOUND"
    assert (await body(await st.client.delete(url, headers=st.alice), 200)) == {"id": muse["id"], "deleted": True}
    assert (await st.client.get(url, headers=st.alice)).status == 404
    assert (await st.client.get(f"/api/v1/muses/{copy['id']}", headers=ADMIN)).status == 200  # admins: anyone's


async def test_gallery_filters_tags_and_deletes(stack: Stack) -> None:
    st = stack
    muse = await body(await st.client.post("/api/v1/muses", json={"name": "Gal"}, headers=st.alice), 201)
    job = await finished(st, (await submit(st, {"workflow": SMOKE}))["id"])
    with_muse = await finished(st, (await submit(st, {"template": "txt2img", "prompt": "m", "muse_id": muse["id"],
                                                      "steps": 2, "width": 64, "height": 64}))["id"])
    oid = job["outputs"][0]["id"]
    page = await body(await st.client.get("/api/v1/gallery", headers=st.alice), 200)
    msgspec.convert(page, lib.GalleryPage)
    assert page["items"][0]["id"] == with_muse["outputs"][0]["id"] and oid in {i["id"] for i in page["items"]}
    assert (await body(await st.client.get("/api/v1/gallery", headers=st.bob), 200))["items"] == []

    tagged = await body(await st.client.post(f"/api/v1/gallery/{oid}/tags", json={"add": ["Fox", "red"]},
                                             headers=st.alice), 200)
    assert tagged["tags"] == ["fox", "red"] and tagged["id"] == oid
    tagged = await body(await st.client.post(f"/api/v1/gallery/{oid}/tags", json={"remove": ["red"]},
                                             headers=st.alice), 200)
    assert tagged["tags"] == ["fox"]
    resp = await st.client.post(f"/api/v1/gallery/{oid}/tags", json={"add": ["x"]}, headers=st.bob)
    assert_error(await body(resp, 404), "NOT_FOUND")
    resp = await st.client.post(f"/api/v1/gallery/{oid}/tags", json={"add": ["no/slash"]}, headers=st.alice)
    assert_error(await body(resp, 422), "VALIDATION_FAILED")

    async def ids(**params: str) -> list[str]:
        data = await body(await st.client.get("/api/v1/gallery", params=params, headers=st.alice), 200)
        return [i["id"] for i in data["items"]]

    assert await ids(tag="FOX") == [oid]
    assert await ids(tag="nothing") == []
    assert await ids(muse_id=muse["id"]) == [with_muse["outputs"][0]["id"]]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert await ids(since=future) == []
    first = await ids(limit="1")
    data = await body(await st.client.get("/api/v1/gallery", params={"limit": "1"}, headers=st.alice), 200)
    assert data["next"] and (await ids(before=data["next"]))[0] != first[0]
    assert (await st.client.get("/api/v1/gallery", params={"since": future, "until": "2020-01-01T00:00:00Z"},
                                headers=st.alice)).status == 422

    assert_error(await body(await st.client.delete(f"/api/v1/gallery/{oid}", headers=st.bob), 404), "NOT_FOUND")
    assert await body(await st.client.delete(f"/api/v1/gallery/{oid}", headers=st.alice), 200) == {
        "id": oid, "deleted": True}
    assert (await st.client.get(f"/api/v1/outputs/{oid}", headers=st.alice)).status == 404
    assert oid not in await ids()
    assert (await st.client.get("/api/v1/outputs/not-an-output", headers=st.alice)).status == 404


async def test_usage_per_user_and_jobs_in_state(stack: Stack) -> None:
    st = stack
    job_id = (await submit(st, {"workflow": SMOKE}))["id"]
    await finished(st, job_id)
    usage = await body(await st.client.get("/api/v1/usage/me", headers=st.alice), 200)
    msgspec.convert(usage, lib.UserUsageReport)
    assert usage["user_id"] == st.alice_id and usage["total"]["jobs"] >= 1 and usage["total"]["cost"] > 0
    assert usage["total"]["gpu_hours"] >= usage["total"]["instance_hours"] > 0
    bob = await body(await st.client.get("/api/v1/usage/me", headers=st.bob), 200)
    assert bob["user_id"] == st.bob_id and bob["total"]["cost"] == 0  # his only job was cancelled while queued
    resp = await st.client.get("/api/v1/usage/me", params={"user_id": st.alice_id}, headers=st.bob)
    assert_error(await body(resp, 403), "FORBIDDEN")
    assert (await body(await st.client.get("/api/v1/usage/me", params={"user_id": st.alice_id}, headers=ADMIN),
                       200))["total"] == usage["total"]
    report = await body(await st.client.get("/api/v1/usage", headers=ADMIN), 200)
    assert report["by_user"][st.alice_id]["cost"] == pytest.approx(usage["total"]["cost"])
    assert (await st.client.get("/api/v1/usage", headers=st.alice)).status == 403

    state = await body(await st.client.get("/api/v1/state", params={"at": datetime.now(UTC).isoformat()},
                                           headers=ADMIN), 200)
    jobs = {j["id"]: j for j in state["jobs"]}
    mine = [j for j in jobs.values() if j["user_id"] == st.alice_id]
    assert mine and all(j["status"] == "completed" for j in mine if j["template"] is None)
    assert jobs[job_id]["status"] == "completed" and jobs[job_id]["outputs"]
    before = await body(await st.client.get("/api/v1/state", params={"at": "2020-01-01T00:00:00Z"}, headers=ADMIN),
                        200)
    assert not any(j["user_id"] == st.alice_id for j in before["jobs"])
    events = await body(await st.client.get("/api/v1/events", params={"context": "gen", "aggregate_type": "job",
                                                                       "aggregate_id": job_id}, headers=ADMIN), 200)
    requested = events["items"][0]
    assert requested["type"] == "GenerationRequested"
    at_request = await body(await st.client.get("/api/v1/state", params={"at": requested["id"]}, headers=ADMIN), 200)
    then = {j["id"]: j for j in at_request["jobs"]}[job_id]
    assert then["status"] == "queued" and then["outputs"] == [] and at_request["event"]["id"] == requested["id"]


async def test_rate_limits_apply_to_generations(stack: Stack, nats_url: str, database_url: str) -> None:
    env = gateway_env(nats_url, database_url, STOKER_POOL_ID=stack.gen.pool_id, STOKER_RATE_LIMIT_API="3/60")
    async with gateway_client(env) as client:
        statuses = [(await client.get("/api/v1/generations", headers=stack.alice)).status for _ in range(3)]
        assert statuses == [200, 200, 200]
        resp = await client.post("/api/v1/generations", json=TXT2IMG, headers=stack.alice)
        assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
        assert_error(await resp.json(), "RATE_LIMITED")
        assert (await client.get("/comfy/queue", params={"token": stack.alice["Authorization"][7:]})).status == 429
        assert (await client.get("/api/v1/generations", headers=stack.bob)).status == 200  # per credential


async def test_every_new_operation_needs_a_credential(stack: Stack) -> None:
    doc = await body(await stack.client.get("/api/openapi.json"), 200)
    checked = 0
    for path, methods in doc["paths"].items():
        for method, item in methods.items():
            if item["tags"][0] not in ("generations", "muses", "gallery", "usage", "comfyui"):
                continue
            url = path.replace("{id}", "j1.00").replace("{prompt_id}", "p1").replace("{node_class}", "KSampler")
            for headers in ({}, {"Authorization": "Bearer stk_" + "B" * 43}):
                resp = await stack.client.request(method.upper(), url, headers=headers, json={})
                assert resp.status == 401, (method, url, resp.status)
                assert_error(await resp.json(), "AUTH_REQUIRED")
            checked += 1
    assert checked >= 30
    resp = await stack.client.get("/api/v1/muses/j1/export", headers=stack.bob)
    assert_error(await body(resp, 404), "NOT_FOUND")


async def test_the_admin_key_generates_as_its_built_in_account(stack: Stack) -> None:
    st = stack
    me = await body(await st.client.get("/api/v1/auth/me", headers=ADMIN), 200)
    created = await body(await st.client.post("/api/v1/generations", json=TXT2IMG, headers=ADMIN), 201)
    done = await finished(st, created["id"], ADMIN)
    assert done["status"] == "completed", done
    mine = await body(await st.client.get("/api/v1/generations", headers=ADMIN), 200)
    assert created["id"] in [j["id"] for j in mine["items"]]  # its jobs belong to its account
    theirs = await body(await st.client.get("/api/v1/generations", headers=st.alice), 200)
    assert created["id"] not in [j["id"] for j in theirs["items"]]
    await body(await st.client.get(f"/api/v1/generations/{created['id']}", headers=st.alice), 404)
    gallery = await body(await st.client.get("/api/v1/gallery", headers=ADMIN), 200)
    output = next(i for i in gallery["items"] if i["job_id"] == created["id"])
    resp = await st.client.get(f"/api/v1/outputs/{output['id']}", headers=ADMIN)
    assert resp.status == 200 and (await resp.read()).startswith(b"\x89PNG")
    assert me["user_id"] and me["user"]["role"] == "admin"


async def test_a_checkpoint_the_pool_cannot_provide_is_refused_before_it_runs(stack: Stack) -> None:
    st = stack
    info = await body(await st.client.get("/api/v1/templates", headers=st.alice), 200)
    offered = info["checkpoints"]
    assert offered and "nope.safetensors" not in offered
    for path in ("/api/v1/generations/estimate", "/api/v1/generations"):
        resp = await st.client.post(path, json={**TXT2IMG, "checkpoint": "nope.safetensors"}, headers=st.alice)
        error = (await body(resp, 422))["error"]
        assert error["code"] == "CHECKPOINT_UNAVAILABLE" and "nope.safetensors" in error["message"]
        assert "Pool → Settings → Models" in error["message"] and error["details"]["available"] == offered
    ok = await body(await st.client.post("/api/v1/generations/estimate", json={**TXT2IMG, "checkpoint": offered[0]},
                                         headers=st.alice), 200)
    assert ok["checkpoint"] == offered[0]

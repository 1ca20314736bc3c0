"""Generation end to end on the embedded stack: real NATS, the real pool service and the simulator's ComfyUI hosts."""

import asyncio
import hashlib
import io
import socket
import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest
import pytest_asyncio
from aiohttp import web
from multidict import CIMultiDict
from nats.js.errors import ObjectNotFoundError
from PIL import Image

from libs.events import NEW, Metadata, codec, subjects
from libs.events import generation as ev
from services.generation import api
from services.generation.runner import job_aggregate
from services.generation.testing import (
    Stack,
    completed,
    event_types,
    eventually,
    gen_stack,
)
from services.generation.webhooks import verify
from services.pool import api as pool_api

pytestmark = pytest.mark.timeout(60)
SMOKE = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1,
                                                      "color": 0xFF0000}},
         "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "byo"}}}


def long_job(steps: int = 150) -> dict:
    """About steps x 20 ms on the fast simulator (a 1024x2048 latent costs two step units)."""
    return {"template": "txt2img", "params": {"prompt": "slow", "steps": steps, "width": 1024, "height": 2048}}


@pytest_asyncio.fixture(scope="module")
async def stack(nats_url: str) -> AsyncIterator[Stack]:
    async with asyncio.timeout(60), gen_stack(nats_url, instances=2) as st:
        yield st


def me(user: str, **body: object) -> dict:
    return {"actor": f"user:{user}", "user_id": user, **body}


async def settle(st: Stack) -> None:
    """Both instances Ready again (a previous test may have held or lost one)."""
    await eventually(lambda: sum(1 for i in st.gen.pool_view().instances.values() if i.phase == "ready") >= 2, 30)


async def test_a_prompt_becomes_a_stored_png_with_progress_in_order(stack: Stack, unique_id: str) -> None:
    user = f"u{unique_id}"
    progress: list[api.Progress] = []
    events: list[str] = []

    async def on_progress(msg) -> None:
        progress.append(msgspec.json.decode(msg.data, type=api.Progress))

    async def on_event(msg) -> None:
        events.append(type(codec.decode(msg.data).event).__name__)

    await settle(stack)
    result = await stack.ok(api.SUBMIT, me(user, template="txt2img", preset="low",
                                           params={"prompt": "a red fox", "steps": 6, "width": 128, "height": 96}))
    job_id = result["job_id"]
    sub_p = await stack.nc.subscribe(subjects.progress_subject(job_id), cb=on_progress)
    sub_e = await stack.nc.subscribe(f"ev.gen.job.{job_id}", cb=on_event)
    assert result["created"] and result["estimated_cost"] > 0 and result["job"]["status"] in ("queued", "running")
    job = await stack.wait_status(user, job_id)
    await sub_p.unsubscribe()
    await sub_e.unsubscribe()
    assert job["status"] == "completed", job["error"]
    records = await stack.events(job_id)
    assert event_types(records)[:5] == ["GenerationRequested", "GenerationQueued", "GenerationClaimed",
                                        "GenerationStarted", "GenerationCompleted"]
    [done] = completed(records)
    [out] = done.outputs
    store = await stack.nc.jetstream().object_store(subjects.OUTPUT_BUCKET)
    data = (await store.get(out.object_name)).data
    assert hashlib.sha256(data).hexdigest() == out.sha256 and len(data) == out.size
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.size == (128, 96) and out.content_type == "image/png"
    assert out.object_name.startswith(f"gen/{user}/{job_id}/")
    steps = [p.step for p in progress if p.kind == "progress"]
    assert steps == list(range(1, 7)), progress  # progress arrived, in order
    assert [p.seq for p in progress] == sorted(p.seq for p in progress)
    assert "GenerationCompleted" in events  # seen live on the job's subject
    charged = [r.event for r in records if isinstance(r.event, ev.GenerationCharged)]
    assert len(charged) == 1 and charged[0].amount == job["actual_cost"] > 0
    assert job["outputs"][0]["sha256"] == out.sha256 and job["progress"] is None and job["waiting"] is None


async def test_a_model_free_bring_your_own_workflow_completes(stack: Stack, unique_id: str) -> None:
    user = f"u{unique_id}"
    job_id = (await stack.ok(api.SUBMIT, me(user, workflow=SMOKE)))["job_id"]
    job = await stack.wait_status(user, job_id)
    assert job["status"] == "completed" and job["checkpoint"] is None
    [out] = job["outputs"]
    store = await stack.nc.jetstream().object_store(subjects.OUTPUT_BUCKET)
    image = Image.open(io.BytesIO((await store.get(out["object_name"])).data))
    assert image.size == (64, 48) and image.convert("RGB").getpixel((0, 0)) == (255, 0, 0)


async def test_comfyui_validation_and_runtime_errors_fail_the_job_with_its_words(stack: Stack, unique_id: str) -> None:
    user = f"u{unique_id}"
    bad_ckpt = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "does_not_exist.safetensors"}},
                "4": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    partly = {**SMOKE, "10": {**bad_ckpt["1"]}, "11": {"class_type": "PreviewAny", "inputs": {"source": ["10", 0]}}}
    escape = {**SMOKE, "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0],
                                                                   "filename_prefix": "../../escape"}}}
    too_big = {**SMOKE, "1": {"class_type": "EmptyImage", "inputs": {"width": 999999, "height": 8, "batch_size": 1,
                                                                     "color": 0}}}
    ids = [(await stack.ok(api.SUBMIT, me(user, workflow=w)))["job_id"] for w in (bad_ckpt, escape, too_big, partly)]
    first, second, third, fourth = [await stack.wait_status(user, j) for j in ids]
    assert first["status"] == "failed" and first["error"]["reason"] == "validation"
    assert "Value not in list" in first["error"]["message"] and "does_not_exist.safetensors" in first["error"]["message"]
    assert first["error"]["node_errors"]["1"]["class_type"] == "CheckpointLoaderSimple"
    assert second["error"]["reason"] == "execution_error" and second["error"]["node_id"] == "2"
    assert "Saving image outside the output folder is not allowed" in second["error"]["message"]
    assert "Value 999999 bigger than max of 16384" in third["error"]["message"]
    # ComfyUI runs the branches that validated; the refused one is reported with the completed job
    assert fourth["status"] == "completed" and len(fourth["outputs"]) == 1
    assert fourth["warnings"]["10"]["errors"][0]["type"] == "value_not_in_list"


async def test_the_api_refuses_clearly_and_keeps_users_apart(stack: Stack, unique_id: str) -> None:
    user, other = f"u{unique_id}", f"o{unique_id}"
    cases = [
        (me(user, template="txt2img", params={"prompt": "x", "batch_size": 9}), "batch_size"),
        (me(user, template="nope", params={}), "unknown template"),
        (me(user, workflow={"2": {"class_type": "SaveImage", "inputs": {"images": ["9", 0]}}}), "Linked node"),
        (me(user, workflow=SMOKE, template="txt2img"), "either a template"),
        (me(user, workflow=SMOKE, webhook_url="ftp://x"), "webhook_url"),
        ({"actor": "a", "user_id": user, "template": "txt2img", "surprise": 1}, "unknown field"),
        ({"actor": "a", "template": "txt2img"}, "user_id"),
    ]
    for body, words in cases:
        reply = await stack.request(api.SUBMIT, body)
        assert not reply.ok and reply.error.code == "VALIDATION_FAILED", (body, reply)
        assert words in reply.error.message and "Traceback" not in reply.error.message
    # A template's checkpoint that no instance has and none will download: refused, saying what to do.
    reply = await stack.request(api.SUBMIT, me(user, template="txt2img",
                                               params={"prompt": "x", "checkpoint": "missing.safetensors"}))
    assert not reply.ok and reply.error.code == "CHECKPOINT_UNAVAILABLE" and "not on any" in reply.error.message
    assert "Pool → Settings → Models" in reply.error.message
    linked = await stack.request(api.SUBMIT, cases[2][0])
    assert linked.error.details["node_errors"]["2"]["errors"][0]["type"] == "bad_linked_input"
    job_id = (await stack.ok(api.SUBMIT, me(user, workflow=SMOKE)))["job_id"]
    for subject, body in [(api.GET, {"job_id": job_id}), (api.CANCEL, {"job_id": job_id})]:
        reply = await stack.request(subject, me(other, **body))
        assert reply.error.code == "NOT_FOUND", reply
    await stack.wait_status(user, job_id)


async def test_idempotency_listing_estimates_and_templates(stack: Stack, unique_id: str) -> None:
    user = f"u{unique_id}"
    body = me(user, workflow=SMOKE, idempotency_key="k-1")
    first = await stack.ok(api.SUBMIT, body)
    again = await stack.ok(api.SUBMIT, body)
    assert first["created"] and not again["created"] and again["job_id"] == first["job_id"]
    ids = [first["job_id"]] + [(await stack.ok(api.SUBMIT, me(user, workflow=SMOKE)))["job_id"] for _ in range(4)]
    for job_id in ids:
        await stack.wait_status(user, job_id)
    pages, cursor = [], None
    while True:
        page = await stack.ok(api.LIST, me(user, limit=2, cursor=cursor))
        pages.append([j["id"] for j in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [j for p in pages for j in p] == list(reversed(ids)) and [len(p) for p in pages] == [2, 2, 1]
    assert (await stack.ok(api.LIST, me(f"x{unique_id}")))["items"] == []
    est = await stack.ok(api.ESTIMATE, me(user, template="txt2img", preset="ultra", params={"prompt": "x"}))
    low = await stack.ok(api.ESTIMATE, me(user, template="txt2img", preset="low", params={"prompt": "x"}))
    assert est["estimated_cost"] > low["estimated_cost"] > 0 and est["dph"] > 0
    assert est["checkpoint"] == "sd15.safetensors"  # the pool's only checkpoint is the default
    info = await stack.ok(api.TEMPLATES, me(user))
    assert {t["name"] for t in info["templates"]} == {"txt2img", "img2img", "video"}
    assert info["checkpoints"] == ["sd15.safetensors"] and "ultra" in info["presets"]["image"]


async def test_muses_and_the_gallery(stack: Stack, unique_id: str) -> None:
    user, other = f"u{unique_id}", f"o{unique_id}"
    muse = {"name": "Ada", "face": {"eyes": "green eyes"}, "style": {"look": "film photo"},
            "negative_prompt": "lowres", "checkpoint": "sd15.safetensors"}
    created = await stack.ok(api.MUSE_CREATE, me(user, muse=muse))
    muse_id = created["id"]
    updated = await stack.ok(api.MUSE_UPDATE, me(user, muse_id=muse_id, muse={**muse, "hair": {"c": "red hair"}}))
    assert updated["version"] == 2 and updated["muse"]["hair"] == {"c": "red hair"}
    exported = await stack.ok(api.MUSE_EXPORT, me(user, muse_id=muse_id))
    imported = await stack.ok(api.MUSE_IMPORT, me(other, document=exported))
    assert imported["muse"] == updated["muse"] and imported["user_id"] == other
    assert (await stack.request(api.MUSE_GET, me(other, muse_id=muse_id))).error.code == "NOT_FOUND"
    assert [m["id"] for m in (await stack.ok(api.MUSE_LIST, me(user)))["items"]] == [muse_id]
    job = await stack.ok(api.SUBMIT, me(user, template="txt2img", muse_id=muse_id,
                                        params={"prompt": "portrait", "steps": 2, "width": 64, "height": 64}))
    done = await stack.wait_status(user, job["job_id"])
    assert done["status"] == "completed" and done["muse_id"] == muse_id
    [req] = [r.event for r in await stack.events(job["job_id"]) if isinstance(r.event, ev.GenerationRequested)]
    assert req.prompt["6"]["inputs"]["text"] == "portrait, green eyes, red hair, film photo"
    assert req.prompt["7"]["inputs"]["text"] == "lowres"
    name = done["outputs"][0]["object_name"]
    tagged = await stack.ok(api.GALLERY_TAG, me(user, object_name=name, add=["Portrait", "ada"]))
    assert tagged["tags"] == ["portrait", "ada"]
    assert (await stack.request(api.GALLERY_TAG, me(other, object_name=name, add=["x"]))).error.code == "NOT_FOUND"
    page = await stack.ok(api.GALLERY_LIST, me(user, tag="ada"))
    assert [i["object_name"] for i in page["items"]] == [name]
    assert (await stack.ok(api.GALLERY_DELETE, me(user, object_name=name)))["deleted"]
    assert (await stack.ok(api.GALLERY_LIST, me(user)))["items"] == []
    store = await stack.nc.jetstream().object_store(subjects.OUTPUT_BUCKET)
    with pytest.raises(ObjectNotFoundError):
        await store.get(name)
    await stack.ok(api.MUSE_DELETE, me(user, muse_id=muse_id))
    assert (await stack.request(api.SUBMIT, me(user, template="txt2img", muse_id=muse_id,
                                               params={"prompt": "x"}))).error.code == "NOT_FOUND"


async def test_a_job_whose_queue_message_was_never_stored_is_queued_by_the_sweeper(stack: Stack,
                                                                                  unique_id: str) -> None:
    user = f"u{unique_id}"
    job_id = str(uuid.uuid4())
    requested = ev.GenerationRequested(user_id=user, workflow=SMOKE)  # a crash right after this append
    recs = await stack.gen.store.append(job_aggregate(job_id), [requested], NEW, Metadata(actor="test"))
    await stack.gen.projector.wait_for(recs[-1].seq)
    assert await stack.gen.jobs.sweep(older_than_s=0) == 1
    assert await stack.gen.jobs.sweep(older_than_s=0) == 0
    job = await stack.wait_status(user, job_id)
    assert job["status"] == "completed"
    assert event_types(await stack.events(job_id))[:2] == ["GenerationRequested", "GenerationQueued"]


async def hold_all(st: Stack) -> list[pool_api.Claim]:
    await settle(st)
    return [await st.pool.commands.claim(pool_api.ClaimRequest(holder="test", lease_s=60)) for _ in range(2)]


async def test_waiting_reasons_and_cancel_of_queued_and_running_jobs(stack: Stack, unique_id: str) -> None:
    user = f"u{unique_id}"
    held = await hold_all(stack)
    first = (await stack.ok(api.SUBMIT, me(user, workflow=SMOKE)))["job_id"]
    second = (await stack.ok(api.SUBMIT, me(user, workflow=SMOKE)))["job_id"]
    view = await stack.ok(api.GET, me(user, job_id=first))
    assert view["status"] == "queued" and view["waiting"]["reason"] == "instances_busy"
    behind = await stack.ok(api.GET, me(user, job_id=second))
    assert behind["waiting"]["reason"] == "behind_jobs" and behind["waiting"]["jobs_ahead"] == 1
    for job_id in (first, second):
        cancelled = await stack.ok(api.CANCEL, me(user, job_id=job_id))
        assert cancelled["status"] == "cancelled" and cancelled["error"]["reason"] == "cancelled"
    await stack.pool.commands.release(pool_api.ReleaseRequest(instance_id=held[0].instance_id,
                                                              lease_id=held[0].lease_id))
    running = (await stack.ok(api.SUBMIT, me(user, **long_job())))["job_id"]

    async def sampling() -> bool:
        job = await stack.ok(api.GET, me(user, job_id=running))
        return job["status"] == "running" and (job["progress"] or {}).get("kind") == "progress"
    await eventually(sampling, 20)
    assert (await stack.ok(api.CANCEL, me(user, job_id=running)))["cancel_requested"]
    job = await stack.wait_status(user, running)
    assert job["status"] == "cancelled" and job["error"]["message"] == "cancelled while running"
    await stack.pool.commands.release(pool_api.ReleaseRequest(instance_id=held[1].instance_id,
                                                              lease_id=held[1].lease_id))
    types = event_types(await stack.events(first))
    assert types == ["GenerationRequested", "GenerationQueued", "GenerationFailed"]  # never ran


async def test_a_webhook_receiver_that_is_down_for_a_while_gets_it_later_signed(stack: Stack, unique_id: str) -> None:
    user = f"u{unique_id}"
    received: list[tuple[bytes, CIMultiDict[str]]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.read(), request.headers.copy()))
        return web.Response(text="ok")

    with socket.socket() as probe:  # a port nobody listens on yet: the receiver is down
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    secret = (await stack.ok(api.WEBHOOK_SECRET, me(user)))["secret"]
    job_id = (await stack.ok(api.SUBMIT, me(user, workflow=SMOKE,
                                            webhook_url=f"http://127.0.0.1:{port}/hook")))["job_id"]
    await stack.wait_status(user, job_id)

    async def attempts() -> list[ev.WebhookAttempted]:
        return [r.event for r in await stack.events(job_id) if isinstance(r.event, ev.WebhookAttempted)]

    async def three_failed() -> bool:
        return len(await attempts()) >= 3
    await eventually(three_failed, 20)
    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await eventually(lambda: received, 20)
    finally:
        await runner.cleanup()
    body, headers = received[0]
    assert verify(secret, headers["X-Stoker-Timestamp"], body, headers["X-Stoker-Signature"])
    payload = msgspec.json.decode(body)
    assert payload["type"] == "generation.completed" and payload["job"]["id"] == job_id
    made = await attempts()
    assert [a.delivered for a in made] == [False] * (len(made) - 1) + [True] and len(made) >= 4
    assert made[0].error.startswith("failed:") and "127.0.0.1" not in made[0].error  # no detail of the target
    job = await stack.ok(api.GET, me(user, job_id=job_id))
    assert job["webhook"]["state"] == "delivered" and job["webhook"]["attempts"] == len(made)


async def test_an_instance_that_dies_mid_job_hands_the_job_to_another(stack: Stack, unique_id: str) -> None:
    user = f"u{unique_id}"
    held = await hold_all(stack)
    doomed, spare = held
    await stack.sim_post(f"/_sim/instances/{stack.provider_id(doomed.instance_id)}/die_mid_job")
    await stack.pool.commands.release(pool_api.ReleaseRequest(instance_id=doomed.instance_id,
                                                              lease_id=doomed.lease_id))
    job_id = (await stack.ok(api.SUBMIT, me(user, **long_job(40))))["job_id"]

    async def lost() -> bool:
        return any(isinstance(r.event, ev.GenerationAttemptLost) for r in await stack.events(job_id))
    await eventually(lost, 20)
    await stack.pool.commands.release(pool_api.ReleaseRequest(instance_id=spare.instance_id, lease_id=spare.lease_id))
    job = await stack.wait_status(user, job_id, timeout=30)
    assert job["status"] == "completed" and job["attempts"] == 2
    records = await stack.events(job_id)
    claims = [r.event.instance_id for r in records if isinstance(r.event, ev.GenerationClaimed)]
    assert claims == [doomed.instance_id, spare.instance_id]
    assert len(completed(records)) == 1 and job["instance_id"] == spare.instance_id

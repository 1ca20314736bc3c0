"""The gateway's generation side, pure: output ids, API shapes, ComfyUI shapes, per-user usage, live routing,
request parsing and the error mapping of the generation client (against hand-written fakes)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import msgspec
import nats.errors
import pytest

from libs.events import Aggregate, Metadata, Recorded
from libs.events import generation as ev
from libs.events.store import EventStore
from libs.events.pool import DEFAULT_CHECKPOINT
from services.gateway import comfy_shapes as shapes
from services.gateway import gen_views
from services.gateway import usage as u
from services.gateway.comfy_compat import RedactTokens
from services.gateway.comfy_proxy import InstanceInfo
from services.gateway.comfy_ws import ComfyClients
from services.gateway.errors import ApiError
from services.gateway.gen_client import GenClient
from services.gateway.gen_reads import GatewayGenView, project_gen
from services.gateway.live import LiveHub
from services.gateway.schemas import generation as g
from services.generation import api
from services.generation.commands import job_id_for
from services.generation.fakes import T0
from services.pool.view import PoolView

STORE = EventStore(None, clock=lambda: T0)  # type: ignore[arg-type]
PNG = ev.Output(object_name="gen/u1/j1/00-fox_00001_.png", filename="fox_00001_.png", content_type="image/png",
                size=3, sha256="ab", node_id="9")
TXT = ev.Output(object_name="gen/u1/j1/01-node4.txt", filename="node4.txt", content_type="text/plain", size=3,
                sha256="cd", node_id="4")


class Log:
    """Records generation events into the gateway's projection."""

    def __init__(self, gpus: int = 1) -> None:
        self.seq, self.versions, self.view = 0, {}, GatewayGenView()
        self.gpus = gpus
        self.records: list[Recorded] = []

    def add(self, job_id: str, event: Any, at: Any = T0) -> Recorded:
        self.seq += 1
        version = self.versions[job_id] = self.versions.get(job_id, 0) + 1
        env = STORE.envelope(Aggregate("gen", ev.JOB, job_id), event, version, Metadata(actor="t"))
        rec = Recorded("EVENTS_GEN", f"ev.gen.job.{job_id}", self.seq, msgspec.structs.replace(env, occurred_at=at))
        self.view = project_gen(self.view, rec, lambda _: self.gpus)
        self.records.append(rec)
        return rec

    def job(self, job_id: str) -> Any:
        return self.view.jobs.jobs[job_id]


def completed_job(key: str | None = None, outputs: tuple[ev.Output, ...] = (PNG, TXT), gpus: int = 1) -> Log:
    log = Log(gpus)
    log.add("j1", ev.GenerationRequested(user_id="u1", workflow={"9": {}}, idempotency_key=key))
    log.add("j1", ev.GenerationClaimed(instance_id="i1", lease_id="l", base_url="http://h", prompt_id="p",
                                       client_id="c", dph=3.6), T0 + timedelta(seconds=1))
    log.add("j1", ev.GenerationStarted(instance_id="i1", prompt_id="p"), T0 + timedelta(seconds=2))
    log.add("j1", ev.GenerationCompleted(prompt_id="p", outputs=outputs, cost=0.01, seconds=10),
            T0 + timedelta(seconds=11))
    log.add("j1", ev.GenerationCharged(user_id="u1", amount=0.01, seconds=10, dph=3.6, instance_id="i1"),
            T0 + timedelta(seconds=11))
    return log


def test_output_ids_name_a_job_and_an_index() -> None:
    assert gen_views.output_index(PNG.object_name) == 0 and gen_views.output_index("gen/u/j/x.png") is None
    assert gen_views.output_id("j1", TXT) == "j1.01"
    assert gen_views.parse_output_id("j1.01") == ("j1", 1)
    assert gen_views.parse_output_id("gen/u1/j1/00-a.png") is None and gen_views.parse_output_id("j1") is None
    log = completed_job()
    assert gen_views.find_output(log.job("j1"), 1) == TXT
    log.add("j1", ev.OutputDeleted(object_name=TXT.object_name))
    assert gen_views.find_output(log.job("j1"), 1) is None and gen_views.find_output(log.job("j1"), 0) == PNG


def test_the_generation_shape_of_a_job() -> None:
    gen = gen_views.generation_of_job(completed_job().job("j1"))
    assert gen.status == "completed" and gen.cost == 0.01 and gen.error is None
    assert [(o.id, o.url) for o in gen.outputs] == [("j1.00", "/api/v1/outputs/j1.00"),
                                                    ("j1.01", "/api/v1/outputs/j1.01")]
    view = api.JobView(id="j2", user_id="u1", status="running",
                       waiting=api.Waiting(reason="loading_model", message="m"),
                       progress=api.Progress(job_id="j2", seq=3, kind="progress", node="3", step=2, max=8),
                       error=None)
    gen = gen_views.generation_of(view)
    assert gen.waiting is not None and gen.waiting.reason == "loading_model"
    assert gen.progress == g.GenerationProgress(kind="progress", seq=3, node="3", step=2, max=8)


def test_the_timeline_of_a_generation_is_timed_by_its_events_not_by_when_it_is_read() -> None:
    log = completed_job()
    log.add("j1", ev.OutputTagged(object_name=PNG.object_name, tags=("fox",)), T0 + timedelta(hours=5))  # no step
    gen = gen_views.generation_of_job(log.job("j1"))
    steps = [(m.kind, (m.at - T0).total_seconds(), m.detail) for m in gen.timeline]
    assert steps == [("queued", 0.0, ""), ("claimed", 1.0, "i1"), ("started", 2.0, ""), ("completed", 11.0, "")]
    encoded = msgspec.json.decode(msgspec.json.encode(gen))
    assert encoded["timeline"][-1] == {"kind": "completed", "at": "2026-01-02T12:00:11Z", "detail": ""}
    retried = Log()
    retried.add("j2", ev.GenerationRequested(user_id="u1", workflow={"9": {}}))
    retried.add("j2", ev.GenerationClaimed(instance_id="i1", lease_id="l", base_url="h", prompt_id="p", client_id="c",
                                           gpu_name="RTX 4090"), T0 + timedelta(seconds=1))
    retried.add("j2", ev.GenerationAttemptLost(instance_id="i1", attempt=1, message="host vanished"),
                T0 + timedelta(seconds=3))
    retried.add("j2", ev.GenerationFailed(reason="cancelled", message="cancelled while queued"), T0 + timedelta(seconds=4))
    gen = gen_views.generation_of_job(retried.job("j2"))
    assert [(m.kind, m.detail) for m in gen.timeline] == [
        ("queued", ""), ("claimed", "RTX 4090"), ("attempt_lost", "host vanished"), ("cancelled", "cancelled")]


def test_gallery_items_say_how_they_were_made_loras_included() -> None:
    log = Log()
    log.add("j3", ev.GenerationRequested(user_id="u1", template="txt2img", preset="low", checkpoint="a.safetensors",
                                         params={"prompt": "a fox", "negative_prompt": "blur", "seed": 7, "width": 512,
                                                 "height": 512, "steps": 12}, muse_id="m1"))
    job = log.job("j3")
    entry = next(iter(log.view.jobs.gallery.get("u1", {}).values()), None)
    assert entry is None  # nothing completed yet; build an entry by hand
    settings = gen_views.settings_of(job, [g.Lora(name="ink.safetensors", strength_model=0.8)])
    assert settings is not None and settings.params["seed"] == 7 and settings.params["negative_prompt"] == "blur"
    assert (settings.template, settings.preset, settings.checkpoint, settings.muse_id) == (
        "txt2img", "low", "a.safetensors", "m1")
    assert settings.loras[0].name == "ink.safetensors"
    workflow = {"1": {"class_type": "LoraLoader", "inputs": {"lora_name": "ink.safetensors", "strength_model": 0.8,
                                                             "strength_clip": 1, "model": ["4", 0]}},
                "2": {"class_type": "LoraLoaderModelOnly", "inputs": {"lora_name": "glow.safetensors",
                                                                      "strength_model": 0.5}},
                "3": {"class_type": "KSampler", "inputs": {"lora_name": "not a loader"}}}
    own = ev.GenerationRequested(user_id="u1", workflow=workflow)
    assert [(x.name, x.strength_model, x.strength_clip) for x in gen_views.loras(own)] == [
        ("ink.safetensors", 0.8, 1.0), ("glow.safetensors", 0.5, None)]
    assert gen_views.loras(None) == [] and gen_views.settings_of(None) is None


def test_prompt_ids_map_to_jobs_without_a_table() -> None:
    assert shapes.prompt_id_of(completed_job().job("j1")) == "j1"
    assert shapes.prompt_id_of(completed_job(key="comfy:my-prompt").job("j1")) == "my-prompt"
    assert shapes.prompt_id_of(completed_job(key="retry-1").job("j1")) == "j1"
    assert job_id_for("u1", "comfy:p") == job_id_for("u1", "comfy:p") != job_id_for("u2", "comfy:p")


def test_a_history_entry_and_the_closing_frames_of_a_completed_prompt() -> None:
    job = completed_job(key="comfy:P").job("j1")
    entry = shapes.history_entry(job, 7, {"9": {"class_type": "SaveImage"}, "4": {"class_type": "PreviewAny"},
                                          "1": {"class_type": "EmptyImage"}}, "C", {TXT.object_name: "foo-bar"})
    assert entry["prompt"] == [7, "P", {"9": {"class_type": "SaveImage"}, "4": {"class_type": "PreviewAny"},
                                        "1": {"class_type": "EmptyImage"}}, {"client_id": "C"}, ["9", "4"]]
    assert entry["outputs"] == {"9": {"images": [{"filename": "fox_00001_.png", "subfolder": "P", "type": "output"}]},
                                "4": {"text": ["foo-bar"]}}
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"]
    assert [m[0] for m in entry["status"]["messages"]] == ["execution_start", "execution_cached", "execution_success"]
    assert entry["meta"]["9"] == {"node_id": "9", "display_node": "9", "parent_node": None, "real_node_id": "9"}
    frames = shapes.end_frames(job, {}, 0)
    assert [f["type"] for f in frames] == ["executed", "executed", "execution_success", "status", "executing"]
    assert frames[-1]["data"] == {"node": None, "prompt_id": "P"}
    assert shapes.find_file(job, "fox_00001_.png") == PNG and shapes.find_file(job, "00-fox_00001_.png") == PNG
    assert shapes.find_file(job, "other.png") is None


def test_same_named_outputs_are_told_apart() -> None:
    twin = msgspec.structs.replace(PNG, object_name="gen/u1/j1/01-fox_00001_.png")
    job = completed_job(outputs=(PNG, twin)).job("j1")
    names = [i["filename"] for i in shapes.ui_outputs(job, {})["9"]["images"]]
    assert names == ["00-fox_00001_.png", "01-fox_00001_.png"]
    assert shapes.find_file(job, "01-fox_00001_.png") == twin


def test_failed_and_cancelled_prompts_end_as_comfyui_says() -> None:
    log = Log()
    log.add("j1", ev.GenerationRequested(user_id="u1", workflow={}))
    log.add("j1", ev.GenerationFailed(reason="validation", message="ckpt_name: not in []",
                                      node_errors={"4": {"errors": []}}))
    kind, data = shapes.end_message(log.job("j1"))
    assert kind == "execution_error" and data["exception_message"] == "ckpt_name: not in []"
    assert data["node_errors"] == {"4": {"errors": []}}
    entry = shapes.history_entry(log.job("j1"), 1, {}, None, {})
    assert entry["status"] == {"status_str": "error", "completed": False, "messages": [["execution_error", data]]}
    assert entry["prompt"][3] == {} and entry["outputs"] == {}
    log.add("j2", ev.GenerationRequested(user_id="u1", workflow={}))
    log.add("j2", ev.GenerationFailed(reason="cancelled", message="cancelled while queued"))
    assert shapes.end_message(log.job("j2"))[0] == "execution_interrupted"
    assert [f["type"] for f in shapes.end_frames(log.job("j2"), {}, 2)] == ["execution_interrupted", "status",
                                                                          "executing"]


def test_progress_frames_and_the_validation_answer() -> None:
    assert shapes.progress_frames("P", "started", None, None, None, 5) == [
        {"type": "execution_start", "data": {"prompt_id": "P", "timestamp": 5}}]
    assert shapes.progress_frames("P", "progress", "3", 2, 8, 5) == [
        {"type": "progress", "data": {"value": 2, "max": 8, "prompt_id": "P", "node": "3"}}]
    assert shapes.progress_frames("P", "executing", "3", None, None, 5)[0]["data"]["node"] == "3"
    assert shapes.progress_frames("P", "unknown", None, None, None, 5) == []
    node_errors = {"2": {"errors": [{"type": "bad_linked_input"}], "dependent_outputs": [], "class_type": "SaveImage"}}
    answer = shapes.prompt_error("invalid workflow: node 2", {"node_errors": node_errors})
    assert answer["error"]["type"] == "prompt_outputs_failed_validation" and answer["node_errors"] == node_errors
    assert set(answer["error"]) == {"type", "message", "details", "extra_info"}
    assert shapes.prompt_error("the workflow has no output node (such as SaveImage)", None)["error"]["type"] == (
        "prompt_no_outputs")
    assert shapes.prompt_error("too big", {})["error"] == {"type": "invalid_prompt", "message": "too big",
                                                           "details": "too big", "extra_info": {}}


def test_charges_fold_into_per_user_usage() -> None:
    log = completed_job(gpus=2)
    day = T0.date()
    assert log.view.usage[day.isoformat()]["u1"] == u.UserBucket(jobs=1, instance_s=10, gpu_s=20, cost=0.01)
    report = u.user_report(log.view.usage, "u1", day, day)
    assert report["total"] == {"jobs": 1, "instance_hours": round(10 / 3600, 6), "gpu_hours": round(20 / 3600, 6),
                               "cost": 0.01}
    assert [d["date"] for d in report["days"]] == [day.isoformat()]
    assert u.user_report(log.view.usage, "u2", day, day)["total"]["jobs"] == 0
    assert u.by_user(log.view.usage, day, day) == {"u1": {k: v for k, v in report["total"].items() if k != "jobs"}}
    assert u.by_user(log.view.usage, day + timedelta(days=1), day + timedelta(days=2)) is None


def test_live_job_changes_and_progress_reach_the_owner_and_admins_only() -> None:
    hub = LiveHub()
    owner, other, admin = hub.subscribe("u1", False), hub.subscribe("u2", False), hub.subscribe(None, True)
    log = completed_job()
    hub.on_job_event(log.job("j1"), log.records[-2])
    hub.on_progress(api.Progress(job_id="j1", seq=1, kind="progress", step=1, max=4), log.job("j1"))
    for client in (owner, admin):
        job, step = client.queue.get_nowait(), client.queue.get_nowait()
        assert job.kind == "job" and job.data["type"] == "GenerationCompleted"  # type: ignore[union-attr]
        assert job.data["generation"]["outputs"][0]["id"] == "j1.00"  # type: ignore[union-attr]
        assert step.kind == "progress" and step.data["step"] == 1  # type: ignore[union-attr]
    assert other.queue.empty()


def test_generation_bodies_take_template_parameters_as_fields() -> None:
    decode = msgspec.json.Decoder(g.GenerationBody).decode
    body = decode(b'{"template": "txt2img", "prompt": "a\\nfox", "seed": 7, "frames": 4}')
    assert gen_views.template_params(body) == {"prompt": "a\nfox", "seed": 7, "frames": 4}
    for bad in (b'{"template": "txt2img", "bogus": 1}', b'{"template": "nope"}', b'{"prompt": "a\\u0000"}',
                b'{"sampler": "not-a-sampler"}'):
        with pytest.raises(msgspec.ValidationError):
            decode(bad)
    assert set(g.TEMPLATE_PARAMS) >= {"prompt", "negative_prompt", "image", "denoise", "frames", "fps", "seed"}
    schema = msgspec.json.schema(g.GenerationBody)["$defs"]["GenerationBody"]["properties"]
    assert "txt2img (min 64, max 2048, multiple_of 8)" in schema["width"]["anyOf"][0]["description"]


class FakeNats:
    def __init__(self, reply: api.Reply | None = None, error: Exception | None = None) -> None:
        self.reply, self.error, self.sent = reply, error, []
        self.is_connected = True

    async def request(self, subject: str, data: bytes, timeout: float, headers: Any = None) -> Any:
        self.sent.append((subject, data))
        if self.error is not None:
            raise self.error
        return type("Msg", (), {"data": msgspec.json.encode(self.reply)})()


@pytest.mark.parametrize(("code", "status"), [("VALIDATION_FAILED", 422), ("NOT_FOUND", 404), ("CONFLICT", 409),
                                              ("UNAVAILABLE", 503), ("INTERNAL", 502)])
async def test_generation_refusals_map_to_statuses(code: str, status: int) -> None:
    reply = api.Reply(ok=False, error=api.Error(code=code, message="no", details={"node_errors": {"1": {}}}))
    with pytest.raises(ApiError) as err:
        await GenClient(FakeNats(reply)).send(api.GET, api.GetRequest(actor="a", user_id="u", job_id="j"))  # type: ignore[arg-type]
    assert err.value.status == status
    if status != 502:
        assert err.value.code == code and err.value.details == {"node_errors": {"1": {}}}


@pytest.mark.parametrize("error", [nats.errors.NoRespondersError(), nats.errors.TimeoutError()])
async def test_a_missing_generation_service_is_503(error: Exception) -> None:
    with pytest.raises(ApiError) as err:
        await GenClient(FakeNats(error=error)).send(api.GET, api.GetRequest(actor="a", user_id="u", job_id="j"))  # type: ignore[arg-type]
    assert err.value.status == 503 and err.value.headers == {"Retry-After": "5"}


def test_tokens_in_urls_stay_out_of_access_logs() -> None:
    record = logging.LogRecord("aiohttp.access", logging.INFO, "", 0,
                               '127.0.0.1 "GET /comfy/ws?clientId=x&token=stk_secret HTTP/1.1" 101', (), None)
    RedactTokens().filter(record)
    assert "stk_secret" not in record.msg and "token=<redacted>" in record.msg and "clientId=x" in record.msg


async def test_instance_info_falls_back_without_a_ready_instance() -> None:
    info = InstanceInfo(lambda: PoolView(pool_id="p"))
    stats = await info.get("/system_stats")
    assert stats.source == "fallback" and stats.data["devices"] == [] and "comfyui_version" in stats.data["system"]
    nodes = await info.get("/object_info")
    assert nodes.source == "fallback"
    # The default pool template downloads the built-in templates' checkpoint: the fallback lists it.
    assert nodes.data["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == [DEFAULT_CHECKPOINT]


def test_comfy_clients_remember_a_bounded_number_of_prompts() -> None:
    clients = ComfyClients(limit=2)
    for n in range(3):
        clients.bind(f"j{n}", f"c{n}")
    assert clients.client_of("j0") is None and clients.client_of("j2") == "c2"

"""Tenant isolation of files on shared instances: workflow file checks, object_info lists, path resolution."""

import json

import pytest

from libs.contracts import host_files as hf
from services.gateway.comfy_files import for_caller
from services.generation import workflow as wf
from services.pool.sim.comfy_files import resolve


def node(required: dict) -> dict:
    return {"input": {"required": required}, "input_order": {"required": list(required)}, "output": ["IMAGE"]}


# File inputs as ComfyUI 0.3.64 declares them (its recorded /object_info, /work/shared/specs/).
pytestmark = pytest.mark.timeout(10)
SPEC = {
    "LoadImage": node({"image": [["example.png"], {"image_upload": True}]}),
    "LoadImageMask": node({"image": [["example.png"], {"image_upload": True}],
                           "channel": [["alpha", "red", "green", "blue"]]}),
    "LoadImageOutput": node({"image": ["COMBO", {"image_folder": "output", "image_upload": True, "remote": {
        "control_after_refresh": "first", "refresh_button": True, "route": "/internal/files/output"}}]}),
    "LoadVideo": node({"file": ["COMBO", {"multiselect": False, "options": [], "video_upload": True}]}),
    "LoadLatent": node({"latent": [[]]}),
    "Load3D": node({"model_file": [["m.glb"], {"file_upload": True}], "width": ["INT", {"default": 1024}]}),
    "CheckpointLoaderSimple": node({"ckpt_name": [["sd15.safetensors"], {"tooltip": "The checkpoint."}]}),
    "KSampler": node({"steps": ["INT", {"default": 20}], "sampler_name": [["euler", "heun"]]}),
}
MINE = "stoker/" + "0f" * 16 + "/image.png"


def load(name: str, class_type: str = "LoadImage", field: str = "image") -> dict:
    return {"1": {"class_type": class_type, "inputs": {field: name}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}


@pytest.mark.parametrize("name", [
    "victim.png", "stoker/" + "ab" * 16 + "/image.png", "ComfyUI_00001_.png [output]", "ComfyUI_00001_.png [temp]",
    "victim.png [input]", "../output/stoker/j1/a_00001_.png", "sub/../../input/victim.png", "/etc/passwd"])
def test_a_workflow_may_not_load_a_file_it_did_not_bring(name: str) -> None:
    with pytest.raises(wf.WorkflowError) as err:
        wf.check_files(load(name))
    [problem] = err.value.node_errors["1"]["errors"]
    assert problem["type"] == "file_not_allowed" and name in problem["details"]


@pytest.mark.parametrize("class_type,field", [("LoadImageMask", "image"), ("LoadImageOutput", "image"),
                                              ("LoadVideo", "file"), ("LoadLatent", "latent"),
                                              ("LoadImageSetFromFolderNode", "folder"),
                                              ("VHS_LoadVideo", "video"), ("LoadSomethingCustom", "path")])
def test_every_loader_of_instance_files_is_checked(class_type: str, field: str) -> None:
    with pytest.raises(wf.WorkflowError):
        wf.check_files(load("input_or_output_file.png", class_type, field))
    assert wf.check_files(load(MINE, class_type, field), frozenset({MINE}))


def test_a_job_loads_its_own_input_and_text_is_left_alone() -> None:
    assert wf.check_files(load(MINE), frozenset({MINE}))
    assert wf.check_files(load(f"{MINE} [input]"), frozenset({MINE}))
    with pytest.raises(wf.WorkflowError):
        wf.check_files(load(f"{MINE} [output]"), frozenset({MINE}))  # same name, another folder
    text = {"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "a sign that says /output and wait..."}},
            "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl/base.safetensors"}}}
    assert wf.check_files(text)


def test_object_info_file_lists_keep_only_the_callers_files() -> None:
    info = json.loads(json.dumps(SPEC))
    info["LoadImage"]["input"]["required"]["image"][0] = ["victim.png", "example.png", MINE]
    info["LoadImageOutput"]["input"]["required"]["image"][1]["options"] = ["a_00001_.png [output]"]
    info["LoadVideo"]["input"]["required"]["file"][1]["options"] = ["clip.mp4"]
    info["LoadLatent"]["input"]["required"]["latent"][0] = ["x.latent"]
    out = for_caller(info, frozenset({MINE}))
    assert out["LoadImage"]["input"]["required"]["image"] == [[MINE], {"image_upload": True}]
    assert out["LoadImageMask"]["input"]["required"]["image"][0] == []
    assert out["LoadImageOutput"]["input"]["required"]["image"][1]["options"] == []
    assert out["LoadVideo"]["input"]["required"]["file"][1]["options"] == []
    assert out["LoadLatent"]["input"]["required"]["latent"][0] == []
    assert out["Load3D"]["input"]["required"]["model_file"][0] == []
    assert out["KSampler"] == info["KSampler"] and out["CheckpointLoaderSimple"] == info["CheckpointLoaderSimple"]
    assert info["LoadImage"]["input"]["required"]["image"][0] == ["victim.png", "example.png", MINE]  # untouched


def test_paths_resolve_like_comfyui_annotated_filepath() -> None:
    assert resolve("a.png") == ("input", "", "a.png")
    assert resolve("sub/a.png") == ("input", "sub", "a.png")
    assert resolve("a_00001_.png [output]") == ("output", "", "a_00001_.png")
    assert resolve("x/a.png [temp]") == ("temp", "x", "a.png")
    assert resolve("../output/stoker/j/a.png") == ("output", "stoker/j", "a.png")
    assert resolve("../../etc/passwd") is None


def test_the_host_files_contract() -> None:
    token = hf.new_token()
    assert len(token) == 32 and hf.new_token() != token
    assert hf.input_name(token, "image.png") == f"stoker/{token}/image.png"
    with pytest.raises(ValueError):
        hf.input_name("../x", "image.png")
    ref = hf.FileRef("output", "stoker/j 1", "a b.png")
    assert hf.file_route(ref) == "/agent/files/output/stoker/j%201/a%20b.png"
    assert not hf.safe_path("../a.png") and not hf.safe_path("/a.png") and not hf.safe_path("a//b.png")
    assert hf.safe_path("stoker/x/a.png") and hf.BLANK_PNG.startswith(b"\x89PNG")


def test_each_jobs_output_nodes_differ_so_comfyui_cannot_answer_from_another_jobs_cache() -> None:
    flow = load(MINE)
    marked = wf.for_job(flow, "j1")
    assert marked["2"]["inputs"] == {**flow["2"]["inputs"], "stoker_job": "j1"}
    assert marked["1"] is flow["1"] and "stoker_job" not in flow["2"]["inputs"]  # upstream stays cached


async def test_on_a_comfyui_without_the_agent_files_are_overwritten_with_a_blank_image() -> None:
    import httpx

    from services.generation.host_files import HttpHostFiles

    seen: list[tuple[str, str, bytes]] = []

    def comfyui(request: httpx.Request) -> httpx.Response:  # a stock ComfyUI: no /agent routes
        seen.append((request.method, request.url.path, request.read()))
        if request.url.path == "/upload/image":
            return httpx.Response(200, json={"name": "image.png", "subfolder": "stoker/t", "type": "input"})
        return httpx.Response(404 if request.method == "DELETE" and "/agent/files/" in request.url.path else 405)

    async with httpx.AsyncClient(transport=httpx.MockTransport(comfyui)) as http:
        files = HttpHostFiles("http://gpu:8188", http)
        assert await files.place("stoker/t/image.png", b"\x89PNG private") == "stoker/t/image.png"
        await files.remove([hf.FileRef("output", "stoker/j1", "a_00001_.png")])
        assert await files.wipe() is False
    (m1, p1, body1), (m2, p2, _), (m3, p3, body3), (m4, p4, _) = seen
    assert (m1, p1) == ("POST", "/upload/image") and b"private" in body1
    assert b'name="subfolder"\r\n\r\nstoker/t' in body1
    assert (m2, p2) == ("DELETE", "/agent/files/output/stoker/j1/a_00001_.png")
    assert (m3, p3) == ("POST", "/upload/image") and hf.BLANK_PNG in body3 and b"\r\n\r\noutput\r\n" in body3
    assert b'name="overwrite"\r\n\r\ntrue' in body3 and (m4, p4) == ("DELETE", "/agent/files")

"""Templates bind parameters by name; presets, limits, muses; bring-your-own workflows are checked."""

import pytest

from libs.events.generation import MuseSpec, MuseVariation
from services.generation import templates as t
from services.generation import workflow as wf
from services.generation.domain import DomainError

SMOKE = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 255}},
         "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "probe"}}}


def bind(name: str, params: dict, **kw):
    kw.setdefault("job_id", "j1")
    kw.setdefault("user_id", "u1")
    kw.setdefault("seed", 42)
    return t.bind(t.TEMPLATES[name], params, **kw)


def refused(code: str = "VALIDATION_FAILED"):
    class _Ctx:
        def __enter__(self):
            self.cm = pytest.raises(DomainError)
            self.info = self.cm.__enter__()
            return self.info

        def __exit__(self, *exc):
            out = self.cm.__exit__(*exc)
            assert self.info.value.code == code, self.info.value
            return out
    return _Ctx()


def test_the_three_templates_load_and_are_valid_workflows() -> None:
    assert set(t.TEMPLATES) == {"txt2img", "img2img", "video"}
    for template in t.TEMPLATES.values():
        assert wf.check(template.workflow)
        described = t.describe(template)
        assert set(described["presets"]) == {"low", "medium", "high", "ultra"}
        assert {p["name"] for p in described["params"]} >= {"prompt", "negative_prompt", "checkpoint", "steps", "cfg",
                                                           "sampler", "scheduler", "seed"}


def test_txt2img_binds_parameters_by_name_with_the_preset_for_steps_and_size() -> None:
    b = bind("txt2img", {"prompt": "a fox", "negative_prompt": "blur", "checkpoint": "sd15.safetensors",
                         "cfg": 5.5, "sampler": "dpmpp_2m", "scheduler": "karras", "batch_size": 4}, preset="high")
    p = b.prompt
    assert p["6"]["inputs"]["text"] == "a fox" and p["7"]["inputs"]["text"] == "blur"
    assert p["4"]["inputs"]["ckpt_name"] == "sd15.safetensors" and b.checkpoint == "sd15.safetensors"
    assert (p["5"]["inputs"]["width"], p["5"]["inputs"]["height"], p["3"]["inputs"]["steps"]) == (1024, 1024, 35)
    assert p["3"]["inputs"]["cfg"] == 5.5 and p["3"]["inputs"]["sampler_name"] == "dpmpp_2m"
    assert p["3"]["inputs"]["seed"] == 42 and b.params["seed"] == 42
    assert p["5"]["inputs"]["batch_size"] == 4
    assert p["9"]["inputs"]["filename_prefix"] == "stoker/j1"
    assert b.work_units == 35 * 4 * 4
    assert t.TEMPLATES["txt2img"].workflow["6"]["inputs"]["text"] == ""  # the template itself is untouched


def test_explicit_values_beat_the_preset() -> None:
    b = bind("txt2img", {"prompt": "x", "steps": 4, "width": 128}, preset="ultra")
    assert (b.prompt["3"]["inputs"]["steps"], b.prompt["5"]["inputs"]["width"], b.prompt["5"]["inputs"]["height"]) \
        == (4, 128, 1536)


@pytest.mark.parametrize("params, preset, words", [
    ({"prompt": "x", "batch_size": 5}, None, "batch_size: must be between 1 and 4"),
    ({"prompt": "x", "width": 100}, None, "multiple of 8"),
    ({"prompt": "x", "steps": "ten"}, None, "whole number"),
    ({"prompt": "x", "sampler": "nope"}, None, "not one of"),
    ({"prompt": "x", "colour": 1}, None, "unknown parameter(s) colour"),
    ({"negative_prompt": "x"}, None, "missing parameter(s): prompt"),
    ({"prompt": "   "}, None, "missing parameter(s): prompt"),
    ({"prompt": "x"}, "extreme", "unknown preset 'extreme'"),
])
def test_bad_parameters_say_what_is_wrong(params: dict, preset: str | None, words: str) -> None:
    with refused() as err:
        bind("txt2img", params, preset=preset)
    assert words in str(err.value)


def test_img2img_uploads_the_users_own_image_only() -> None:
    token = "0123456789abcdef" * 2
    b = bind("img2img", {"prompt": "x", "image": "gen/u1/j0/00-a.png", "denoise": 0.5}, input_token=token)
    assert b.uploads == {f"stoker/{token}/image.png": "gen/u1/j0/00-a.png"}  # the job's own unguessable folder
    assert b.prompt["10"]["inputs"]["image"] == f"stoker/{token}/image.png"
    assert b.prompt["3"]["inputs"]["denoise"] == 0.5
    other = bind("img2img", {"prompt": "x", "image": "gen/u1/j0/00-a.png"})
    [name] = other.uploads
    assert name.startswith("stoker/") and name != f"stoker/{token}/image.png"  # random when not given
    with refused("NOT_FOUND"):
        bind("img2img", {"prompt": "x", "image": "gen/u2/j0/00-a.png"})
    with refused() as err:
        bind("img2img", {"prompt": "x"})
    assert "image" in str(err.value)


def test_video_binds_frames_and_fps() -> None:
    b = bind("video", {"prompt": "waves", "frames": 24, "fps": 12}, preset="low")
    assert b.prompt["5"]["inputs"]["batch_size"] == 24 and b.prompt["9"]["inputs"]["fps"] == 12.0
    assert b.prompt["9"]["class_type"] == "SaveAnimatedPNG" and b.work_units == 12 * 0.25 * 24
    with refused():
        bind("video", {"prompt": "x", "frames": 500})


def test_a_muse_shapes_prompt_negative_checkpoint_and_reference() -> None:
    muse = MuseSpec(name="Ada", face={"eyes": "green eyes"}, hair={"style": "red bob"}, style={"look": "film photo"},
                    negative_prompt="lowres", checkpoint="muse.safetensors", reference_images=("gen/u1/j0/00-r.png",),
                    variations=(MuseVariation(name="night", attributes={"style": {"look": "neon noir"}},
                                              prompt_suffix="rain"),))
    b = bind("txt2img", {"prompt": "portrait", "negative_prompt": "blur"}, muse=muse)
    assert b.prompt["6"]["inputs"]["text"] == "portrait, green eyes, red bob, film photo"
    assert b.prompt["7"]["inputs"]["text"] == "lowres, blur" and b.checkpoint == "muse.safetensors"
    night = bind("txt2img", {"prompt": "portrait"}, muse=muse, variation="night")
    assert night.prompt["6"]["inputs"]["text"] == "portrait, green eyes, red bob, neon noir, rain"
    assert list(bind("img2img", {"prompt": "p"}, muse=muse).uploads.values()) == ["gen/u1/j0/00-r.png"]
    with refused():
        bind("txt2img", {"prompt": "p"}, muse=muse, variation="day")


def test_a_default_checkpoint_fills_in_when_none_is_given() -> None:
    assert bind("txt2img", {"prompt": "x"}, default_checkpoint="pool.safetensors").checkpoint == "pool.safetensors"
    assert bind("txt2img", {"prompt": "x"}).checkpoint == "v1-5-pruned-emaonly.safetensors"


def test_a_model_free_workflow_passes_the_check() -> None:
    assert wf.check(SMOKE) is SMOKE
    assert wf.checkpoint_of(SMOKE) is None and wf.work_units(SMOKE) == 1.0


@pytest.mark.parametrize("workflow, words", [
    ({}, "non-empty JSON object"),
    ([1, 2], "non-empty JSON object"),
    ({"nodes": [], "links": []}, "UI-format"),
    ({"1": {"class_type": "EmptyImage", "inputs": {}}}, "no output node"),
    ({"1": {"inputs": {}}}, "node 1: Node has no class_type"),
    ({"2": {"class_type": "SaveImage", "inputs": {"images": ["99", 0]}}},
     "node 2 (SaveImage): Linked node does not exist - images: links to node '99'"),
    ({"1": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
      "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}}, "cycle"),
])
def test_broken_workflows_are_refused_with_node_errors(workflow: object, words: str) -> None:
    with pytest.raises(wf.WorkflowError) as err:
        wf.check(workflow)
    assert words in str(err.value)
    if "node 2" in words:
        assert err.value.node_errors["2"]["errors"][0]["type"] == "bad_linked_input"


def test_an_allow_list_limits_node_classes_and_size_is_bounded() -> None:
    assert wf.check(SMOKE, frozenset({"EmptyImage", "SaveImage"})) is SMOKE
    with pytest.raises(wf.WorkflowError) as err:
        wf.check(SMOKE, frozenset({"SaveImage"}))
    assert err.value.node_errors["1"]["errors"][0]["type"] == "node_not_allowed"
    huge = {**SMOKE, "3": {"class_type": "PreviewAny", "inputs": {"source": "x" * (wf.MAX_BYTES + 1)}}}
    with pytest.raises(wf.WorkflowError, match="larger than"):
        wf.check(huge)

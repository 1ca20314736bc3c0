"""ComfyUI prompt validation: the same error types and shapes as the real server."""

from typing import Any

from services.pool.sim.comfy_validate import type_compatible, validate_prompt


class Env:
    """A fake host: one checkpoint, one uploaded image."""

    def files(self, folder: str) -> list[str]:
        return ["sd15.safetensors"] if folder == "checkpoints" else []

    def input_files(self) -> list[str]:
        return ["up.png"]

    def read_file(self, kind: str, subfolder: str, filename: str) -> bytes | None:
        return b"png" if (kind, subfolder, filename) == ("input", "", "up.png") else None

    def save_file(self, kind: str, subfolder: str, filename: str, data: bytes) -> None:
        raise AssertionError("validation never saves")

    def next_counter(self, kind: str, subfolder: str, prefix: str) -> int:
        return 1

    def random_letters(self, n: int) -> str:
        return "a" * n


def smoke(**image_inputs: Any) -> dict[str, Any]:
    inputs = {"width": 64, "height": 64, "batch_size": 1, "color": 16711680, **image_inputs}
    return {"1": {"class_type": "EmptyImage", "inputs": inputs},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "probe"}}}


def only_error(prompt: dict[str, Any], node: str = "1") -> dict[str, Any]:
    v = validate_prompt(prompt, Env())
    assert v.error is not None and v.error["type"] == "prompt_outputs_failed_validation"
    errors = v.node_errors[node]["errors"]
    assert len(errors) == 1
    return errors[0]


def test_valid_prompt_converts_literals_in_place() -> None:
    prompt = smoke(width="32")
    v = validate_prompt(prompt, Env())
    assert v.error is None and v.good_outputs == ["2"] and v.node_errors == {}
    assert prompt["1"]["inputs"]["width"] == 32


def test_prompt_level_errors() -> None:
    v = validate_prompt({"1": {"class_type": "NoSuchNode", "inputs": {}}}, Env())
    assert v.error == {"type": "invalid_prompt", "message": "Cannot execute because node NoSuchNode does not exist.",
                       "details": "Node ID '#1'", "extra_info": {}}
    v = validate_prompt({"1": smoke()["1"]}, Env())
    assert v.error is not None and v.error["type"] == "prompt_no_outputs" and v.node_errors == {}
    v = validate_prompt(smoke(), Env(), partial_targets=["1"])
    assert v.error is not None and v.error["type"] == "prompt_no_outputs"


def test_input_errors() -> None:
    err = only_error(smoke(width="abc"))
    assert err["type"] == "invalid_input_type" and err["details"].startswith("width, abc, invalid literal")
    assert "exception_message" in err["extra_info"]
    err = only_error(smoke(width=999999))
    assert err["type"] == "value_bigger_than_max" and err["message"] == "Value 999999 bigger than max of 16384"
    assert only_error(smoke(width=0))["type"] == "value_smaller_than_min"
    prompt = smoke()
    del prompt["1"]["inputs"]["color"]
    assert only_error(prompt) == {"type": "required_input_missing", "message": "Required input is missing",
                                  "details": "color", "extra_info": {"input_name": "color"}}


def test_missing_checkpoint_is_value_not_in_list_on_the_loader_only() -> None:
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "does_not_exist.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["1", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": 1, "steps": 2, "cfg": 7.0,
                                                   "sampler_name": "euler", "scheduler": "normal", "positive": ["2", 0],
                                                   "negative": ["2", 0], "latent_image": ["5", 0], "denoise": 1.0}},
        "4": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["1", 2]}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "x"}},
    }
    v = validate_prompt(prompt, Env())
    assert v.error is not None and v.error["details"] == ""
    assert list(v.node_errors) == ["1"]
    entry = v.node_errors["1"]
    assert entry["dependent_outputs"] == ["6"] and entry["class_type"] == "CheckpointLoaderSimple"
    assert entry["errors"][0]["type"] == "value_not_in_list"
    assert entry["errors"][0]["details"] == "ckpt_name: 'does_not_exist.safetensors' not in ['sd15.safetensors']"


def test_link_errors() -> None:
    prompt = smoke()
    prompt["2"]["inputs"]["images"] = ["99", 0]
    v = validate_prompt(prompt, Env())
    assert v.error is not None and v.error["details"] == "Exception when validating node: '99'"
    err = v.node_errors["2"]["errors"][0]
    assert err["type"] == "exception_during_validation" and err["extra_info"]["exception_type"] == "KeyError"
    assert isinstance(err["extra_info"]["traceback"], list)
    prompt["2"]["inputs"]["images"] = ["1", 5]
    assert only_error(prompt, "2")["extra_info"]["exception_type"] == "IndexError"
    prompt = {"1": {"class_type": "StringConcatenate", "inputs": {"string_a": "a", "string_b": "b", "delimiter": "-"}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}
    err = only_error(prompt, "2")
    assert err["type"] == "return_type_mismatch" and err["extra_info"]["received_type"] == "STRING"
    assert err["details"] == "images, received_type(STRING) mismatch input_type(IMAGE)"


def test_load_image_custom_validation_and_any_type() -> None:
    prompt: dict[str, Any] = {"1": {"class_type": "LoadImage", "inputs": {"image": "missing.png"}},
              "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    err = only_error(prompt)
    assert err["type"] == "custom_validation_failed" and err["details"] == "image - Invalid image file: missing.png"
    prompt["1"]["inputs"]["image"] = "up.png"
    assert validate_prompt(prompt, Env()).error is None
    assert type_compatible("STRING", "*") and type_compatible("IMAGE", "IMAGE,MASK") and not type_compatible("A", "B")

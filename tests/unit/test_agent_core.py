"""The agent's pure core: model planning, token routing, checksums, disk refusal and the phase machine."""

import pytest

from services.agent import phases as p
from services.agent.models import ModelSpecError, TokenRule, auth_headers, expected_sha256, parse_models, \
    redact_url, space_refusal

SHA = "a" * 64


def test_models_land_in_their_folders() -> None:
    models = parse_models(
        "https://huggingface.co/x/y/resolve/main/sd_xl_base_1.0.safetensors,"
        "loras:https://civitai.com/api/download/models/123?type=Model,"
        "https://huggingface.co/a/b/resolve/main/vae/sdxl_vae.safetensors,"
        "loras/face.safetensors, sd15.safetensors, sd15.safetensors")
    assert [(m.folder, m.name) for m in models] == [
        ("checkpoints", "sd_xl_base_1.0.safetensors"), ("loras", "123"), ("vae", "sdxl_vae.safetensors"),
        ("loras", "face.safetensors"), ("checkpoints", "sd15.safetensors")]
    assert models[3].url is None and models[1].url is not None


@pytest.mark.parametrize("entry", ["ftp://h/x.safetensors", "https:///x.safetensors", "../etc/passwd",
                                   "a/../b.ckpt"])
def test_bad_model_entries_are_refused(entry: str) -> None:
    with pytest.raises(ModelSpecError):
        parse_models(entry)


def test_tokens_go_only_to_their_own_host() -> None:
    tokens = {"HF_TOKEN": "hf_secret", "CIVITAI_TOKEN": "civ_secret"}
    assert auth_headers("https://huggingface.co/a/b/resolve/main/m.safetensors", tokens) == {
        "Authorization": "Bearer hf_secret"}
    assert auth_headers("https://civitai.com/api/download/models/1", tokens) == {"Authorization": "Bearer civ_secret"}
    assert auth_headers("https://cdn-lfs.hf.co/x", tokens) == {"Authorization": "Bearer hf_secret"}
    for other in ("https://cas-bridge.xethub.hf.co.evil.example/x", "https://evilhuggingface.co/x",
                  "https://example.com/m.safetensors", "http://huggingface.co/m.safetensors"):
        assert auth_headers(other, tokens) == {}, other
    assert auth_headers("http://127.0.0.1:9/m", tokens, (TokenRule("HF_TOKEN", ("127.0.0.1",)),)) == {
        "Authorization": "Bearer hf_secret"}


def test_urls_are_logged_without_their_query() -> None:
    assert redact_url("https://civitai.com/api/download/models/1?token=abc") == "https://civitai.com/api/download/models/1"


def test_checksum_comes_from_the_linked_etag() -> None:
    assert expected_sha256({"X-Linked-Etag": f'"{SHA}"'}) == SHA
    assert expected_sha256({"ETag": 'W/"abc"'}) is None
    assert expected_sha256({}) is None


def test_disk_refusal_says_how_much() -> None:
    gb = 1024 ** 3
    assert space_refusal("checkpoints/m", 5 * gb, 10 * gb, 2 * gb) is None
    reason = space_refusal("checkpoints/m", 9 * gb, 10 * gb, 2 * gb)
    assert reason is not None and "9.00 GB" in reason and "10.00 GB is free" in reason and "disk_gb" in reason


def _files(*states: str) -> tuple[p.FileProgress, ...]:
    return tuple(p.FileProgress(folder="checkpoints", name=f"f{i}", state=s) for i, s in enumerate(states))  # type: ignore[arg-type]


def test_phases_walk_from_booting_to_ready() -> None:
    s = p.AgentState()
    assert s.phase == "booting"
    s = p.evolve(s, p.Booting("installing ComfyUI v0.3.64"))
    assert (s.phase, s.reason) == ("booting", "installing ComfyUI v0.3.64")
    s = p.evolve(s, p.Planned(_files("pending", "done")))
    assert s.phase == "downloading" and s.reason == ""
    s = p.evolve(s, p.Progress("f0", 50, 100))
    assert p.bytes_done(s) == (50, None)  # f1's size is unknown
    s = p.evolve(s, p.ComfyUp("0.3.64"))
    assert s.phase == "downloading"  # ComfyUI answering is not enough while a model is missing
    s = p.evolve(s, p.FileDone("f0", 100))
    assert s.phase == "starting_comfyui"
    s = p.evolve(s, p.ComfyUp("0.3.64"))
    assert s.phase == "ready" and s.comfyui_version == "0.3.64"


def test_nothing_to_download_goes_straight_to_starting() -> None:
    assert p.evolve(p.AgentState(), p.Planned(())).phase == "starting_comfyui"


def test_a_failed_download_fails_the_agent_for_good() -> None:
    s = p.evolve(p.AgentState(), p.Planned(_files("pending")))
    s = p.evolve(s, p.Failed("not enough disk for f0", "f0"))
    assert (s.phase, s.reason, s.files[0].state) == ("failed", "not enough disk for f0", "failed")
    assert p.evolve(s, p.ComfyUp("x")).phase == "failed"


def test_comfyui_restarts_then_gives_up() -> None:
    s = p.evolve(p.evolve(p.AgentState(), p.Planned(())), p.ComfyUp("v"))
    s = p.evolve(s, p.ComfyExited(1))
    assert s.phase == "starting_comfyui" and "restarting" in s.reason
    s = p.evolve(s, p.ComfyUp("v"))
    assert s.phase == "ready" and s.restarts == 0
    for _ in range(p.MAX_RESTARTS):
        s = p.evolve(s, p.ComfyExited(137))
    assert s.phase == "failed" and "/agent/logs" in s.reason


def test_host_paths_cannot_leave_their_folder(tmp_path) -> None:
    from services.agent.files import BadName, DiskFiles

    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "out").symlink_to(tmp_path)  # a symlink pointing outside input/
    files = DiskFiles(tmp_path)
    for bad in ("out/x.png", "../x.png", "/etc/passwd", "a//b.png", "./a.png", "a\\b.png"):
        with pytest.raises(BadName):
            files.put("input", bad, b"x")
    files.put("input", "stoker/0123/a.png", b"x")
    assert files.wipe() == ["input/stoker/0123/a.png"] and not (tmp_path / "input" / "stoker").exists()

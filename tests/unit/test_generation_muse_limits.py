"""Muse hardening (issue 12 items 7 and 8): plain placeholders only, bounded prompts, clean fields, own references."""

import pytest

from libs.events import generation as ev
from services.generation import muse as m
from services.generation import templates as t
from services.generation.domain import DomainError


def refused(spec: ev.MuseSpec, user_id: str = "u1") -> str:
    with pytest.raises(DomainError) as err:
        m.decide_muse(m.Muse(id="m1"), m.CreateMuse(user_id=user_id, spec=spec))
    assert err.value.code == "VALIDATION_FAILED"
    return str(err.value)


@pytest.mark.parametrize("template", ["{prompt:>999999999}", "{prompt:_>300000}", "{prompt!r}", "{face!s}, {prompt}",
                                      "{prompt}, {face:{face}}", "{prompt:}"])
def test_format_specs_and_conversions_are_refused(template: str) -> None:
    assert "plain placeholders" in refused(ev.MuseSpec(name="a", prompt_template=template))


def test_a_template_that_renders_longer_than_a_prompt_may_be_is_refused() -> None:
    face = {f"k{i}": "v" * 300 for i in range(30)}
    words = refused(ev.MuseSpec(name="a", face=face, prompt_template="{prompt} " + "{face} " * 200))
    assert "4000" in words


def test_a_job_prompt_made_too_long_by_the_muse_is_refused_before_it_is_built() -> None:
    muse = ev.MuseSpec(name="Ada", face={"eyes": "green eyes " * 25})
    m.decide_muse(m.Muse(id="m1"), m.CreateMuse(user_id="u1", spec=muse))  # fine on its own
    template = t.TEMPLATES["txt2img"]
    with pytest.raises(DomainError) as err:
        t.bind(template, {"prompt": "x" * 3900}, job_id="j1", user_id="u1", seed=1, muse=muse)
    assert err.value.code == "VALIDATION_FAILED" and "4000" in str(err.value)
    ok = t.bind(template, {"prompt": "x" * 100}, job_id="j1", user_id="u1", seed=1, muse=muse)
    assert ok.prompt["6"]["inputs"]["text"].startswith("x" * 100)


@pytest.mark.parametrize("spec", [
    ev.MuseSpec(name="Ada\x00"),
    ev.MuseSpec(name="Ada", face={"eyes\x00": "green"}),
    ev.MuseSpec(name="Ada", face={"eyes": "green\x1b[31m"}),
    ev.MuseSpec(name="Ada", negative_prompt="blur\x00"),
    ev.MuseSpec(name="Ada", prompt_template="{prompt}\x00"),
    ev.MuseSpec(name="Ada", checkpoint="x\x00.safetensors"),
    ev.MuseSpec(name="Ada", variations=(ev.MuseVariation(name="v", prompt_suffix="rain\x07"),)),
])
def test_control_characters_are_refused(spec: ev.MuseSpec) -> None:
    assert "control characters" in refused(spec)


def test_line_breaks_in_free_text_are_fine() -> None:
    spec = ev.MuseSpec(name="Ada", negative_prompt="blur,\nlowres", prompt_template="{prompt},\n{face}")
    assert m.decide_muse(m.Muse(id="m1"), m.CreateMuse(user_id="u1", spec=spec))


@pytest.mark.parametrize("ref", ["gen/u2/j1/00-a.png", "j1:0", "gen/u1/../u2/j1/00-a.png", "gen/u10/j/x.png"])
def test_references_to_objects_that_are_not_yours_are_refused(ref: str) -> None:
    assert "your own" in refused(ev.MuseSpec(name="Ada", reference_images=(ref,)))
    muse = m.evolve_muse(m.Muse(id="m1"), ev.MuseCreated(user_id="u1", muse=ev.MuseSpec(name="Ada")), t0())
    with pytest.raises(DomainError):
        m.decide_muse(muse, m.UpdateMuse(spec=ev.MuseSpec(name="Ada", reference_images=(ref,))))


def test_an_imported_muse_drops_references_it_cannot_read() -> None:
    spec = ev.MuseSpec(name="Ada", reference_images=("gen/u2/j1/00-a.png", "gen/u1/j2/00-b.png"))
    [created] = m.decide_muse(m.Muse(id="m1"), m.CreateMuse(user_id="u1", spec=spec, source="import"))
    assert created.muse.reference_images == ("gen/u1/j2/00-b.png",)


def t0():
    from services.generation.fakes import T0
    return T0

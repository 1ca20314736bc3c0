"""Muses: validation, every change an event, import/export round trips."""

import pytest

from libs.events import generation as ev
from services.generation import muse as m
from services.generation.domain import DomainError
from services.generation.fakes import T0

SPEC = ev.MuseSpec(name="Ada", basics={"age": "30 year old woman"}, face={"eyes": "green eyes"},
                   personality={"mood": "curious"}, checkpoint="x.safetensors",
                   variations=(ev.MuseVariation(name="winter", attributes={"style": {"outfit": "wool coat"}}),))


def test_create_update_delete_are_events() -> None:
    [created] = m.decide_muse(m.Muse(id="m1"), m.CreateMuse(user_id="u1", spec=SPEC))
    muse = m.evolve_muse(m.Muse(id="m1"), created, T0, seq=5)
    assert muse.exists and muse.user_id == "u1" and muse.seq == 5
    changed = ev.MuseSpec(name="Ada Lovelace", face={"eyes": "grey eyes"})
    [updated] = m.decide_muse(muse, m.UpdateMuse(spec=changed))
    assert updated == ev.MuseUpdated(muse=changed)
    assert m.decide_muse(muse, m.UpdateMuse(spec=SPEC)) == []  # no change, no event
    [deleted] = m.decide_muse(muse, m.DeleteMuse())
    gone = m.evolve_muse(muse, deleted, T0)
    with pytest.raises(DomainError) as err:
        m.decide_muse(gone, m.UpdateMuse(spec=SPEC))
    assert err.value.code == "NOT_FOUND"
    with pytest.raises(DomainError):
        m.decide_muse(muse, m.CreateMuse(user_id="u1", spec=SPEC))


@pytest.mark.parametrize("spec, words", [
    (ev.MuseSpec(name=""), "name"),
    (ev.MuseSpec(name="a", prompt_template="{prompt}, {mood}"), "unknown placeholder(s) mood"),
    (ev.MuseSpec(name="a", prompt_template="{face}"), "must contain {prompt}"),
    (ev.MuseSpec(name="a", prompt_template="{prompt"), "prompt_template"),
    (ev.MuseSpec(name="a", face={"x" * 41: "y"}), "attribute names"),
    (ev.MuseSpec(name="a", variations=(ev.MuseVariation(name="v", attributes={"shoes": {"a": "b"}}),)),
     "unknown attribute group 'shoes'"),
    (ev.MuseSpec(name="a", reference_images=tuple(f"gen/u/j/{i}" for i in range(9))), "reference images"),
])
def test_invalid_muses_are_refused_with_a_reason(spec: ev.MuseSpec, words: str) -> None:
    with pytest.raises(DomainError) as err:
        m.decide_muse(m.Muse(id="m1"), m.CreateMuse(user_id="u1", spec=spec))
    assert err.value.code == "VALIDATION_FAILED" and words in str(err.value)


def test_render_joins_groups_and_applies_a_variation() -> None:
    assert m.render(SPEC, "in a garden") == ("in a garden, 30 year old woman, green eyes", "")
    assert m.render(SPEC, "p", "winter")[0] == "p, 30 year old woman, green eyes, wool coat"


def test_export_then_import_gives_the_same_muse() -> None:
    doc = m.export_document(SPEC)
    assert doc["format"] == "stoker.muse" and doc["version"] == 1
    assert m.import_document(doc) == SPEC


@pytest.mark.parametrize("doc, words", [
    ({"format": "other", "version": 1, "muse": {"name": "a"}}, "unsupported document"),
    ({"format": "stoker.muse", "version": 2, "muse": {"name": "a"}}, "unsupported document"),
    ({"format": "stoker.muse", "version": 1, "muse": {"name": "a", "wings": 2}}, "wings"),
    ({"muse": {}}, "not a muse document"),
])
def test_bad_documents_are_refused(doc: dict, words: str) -> None:
    with pytest.raises(DomainError) as err:
        m.import_document(doc)
    assert words in str(err.value)

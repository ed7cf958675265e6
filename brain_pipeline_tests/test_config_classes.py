"""The launchpad's config classes are faces of the core's settings: same fields, same
defaults, same types. A field added to a core dataclass and not to its face fails here."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from brain_pipeline.core.data.dedup import IndexSettings
from brain_pipeline.core.data.splits import SplitSettings
from brain_pipeline.core.emissions import TrackerSettings
from brain_pipeline.core.explain.gallery import GallerySettings
from brain_pipeline.core.model.training import TrainingConfig
from brain_pipeline.defs.explanation import GalleryConfig
from brain_pipeline.defs.ingestion import IndexConfig, SplitConfig
from brain_pipeline.defs.resources import CarbonTracker
from brain_pipeline.defs.training import TrainingParams

FACES = [
    (IndexConfig, IndexSettings),
    (SplitConfig, SplitSettings),
    (GalleryConfig, GallerySettings),
    (CarbonTracker, TrackerSettings),
]
# TrainingConfig's fields a launch cannot set one by one: the augmentation is on or off
# (`augment`, resolved by the sweep).
NOT_LAUNCH_SETTINGS = {"augmentation"}
LAUNCH_ONLY = {"augment": bool}


def core_fields(core: type) -> dict[str, tuple[object, object]]:
    hints = typing.get_type_hints(core)
    return {field.name: (hints[field.name], field.default) for field in dataclasses.fields(core)}


def face_fields(face: type) -> dict[str, tuple[object, object]]:
    return {name: (field.annotation, field.default) for name, field in face.model_fields.items()}


@pytest.mark.parametrize("face, core", FACES, ids=lambda cls: cls.__name__)
def test_a_config_class_has_its_core_settings_fields_types_and_defaults(face, core) -> None:
    assert face_fields(face) == core_fields(core)


@pytest.mark.parametrize("face, core", FACES, ids=lambda cls: cls.__name__)
def test_a_config_class_at_its_defaults_gives_the_core_defaults(face, core) -> None:
    instance = face()
    as_core = instance.settings() if face is CarbonTracker else instance.to_core()
    assert as_core == core()


def test_training_params_can_override_every_training_setting() -> None:
    params = face_fields(TrainingParams)
    expected = {
        name: typing.Optional[hint]  # noqa: UP045 (the annotation pydantic reports)
        for name, (hint, _) in core_fields(TrainingConfig).items()
        if name not in NOT_LAUNCH_SETTINGS
    } | {name: typing.Optional[hint] for name, hint in LAUNCH_ONLY.items()}  # noqa: UP045
    assert {name: annotation for name, (annotation, _) in params.items()} == expected
    assert all(default is None for _, default in params.values())  # unset: the sweep's


def test_the_check_catches_a_field_the_face_forgot() -> None:
    @dataclasses.dataclass(frozen=True)
    class Grown(IndexSettings):
        new_setting: int = 3

    assert face_fields(IndexConfig) != core_fields(Grown)

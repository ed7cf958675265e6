"""The sweep file: named configurations, validated with errors that name the file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from brain_pipeline.core.model.sweep import load_sweep
from brain_pipeline.core.model.training import TrainingConfig


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


def test_the_repository_sweep_differs_in_architecture_size_and_schedule() -> None:
    sweep = load_sweep()  # sweep.toml in the repository
    assert sweep.default in sweep.names and 3 <= len(sweep.names) <= 4
    configs = [sweep.resolve(name) for name in sweep.names]
    assert sweep.resolve(sweep.default) == TrainingConfig()
    assert len({c.architecture for c in configs}) > 1
    assert len({c.image_size for c in configs}) > 1
    assert len({(c.epochs, c.lr_schedule) for c in configs}) > 1


def test_a_configuration_lists_what_differs_and_launch_settings_win(tmp_path: Path) -> None:
    sweep = load_sweep(
        write(
            tmp_path,
            'default = "small"\n[configurations.small]\nimage_size = 64\naugment = false\n'
            '[configurations.big]\narchitecture = "compact_cnn"\n',
        )
    )
    assert sweep.names == ["small", "big"]
    small = sweep.resolve("small", {"epochs": 3})
    assert (small.image_size, small.epochs, small.augmentation.enabled) == (64, 3, False)
    assert sweep.resolve("big").architecture == "compact_cnn"
    with pytest.raises(ValueError, match="no configuration 'huge'; it has small, big"):
        sweep.resolve("huge")


def test_an_augmentation_table_lays_its_settings_over_the_block(tmp_path: Path) -> None:
    sweep = load_sweep(
        write(
            tmp_path,
            "[configurations.style]\naugmentation = {noise = 0.03, blur = 0.5}\n"
            "[configurations.only_noise]\naugment = false\naugmentation = {noise = 0.05}\n",
        )
    )
    style = sweep.resolve("style").augmentation
    assert (style.noise, style.blur, style.flip, style.zoom) == (0.03, 0.5, True, 0.08)
    only_noise = sweep.resolve("only_noise").augmentation
    assert (only_noise.noise, only_noise.flip, only_noise.rotation) == (0.05, False, 0)
    assert only_noise.enabled
    launched = sweep.resolve("style", {"augmentation": {"blur": 0.0}}).augmentation
    assert (launched.noise, launched.blur) == (0.0, 0.0), "a launch table replaces the file's"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[configurations.a]\naugmentation = {nosie = 0.1}\n",
            r"\[configurations.a\] augmentation: unknown setting 'nosie'",
        ),
        ("[configurations.a]\naugmentation = {flip = 1}\n", "flip = 1 should be bool"),
        ("[configurations.a]\naugmentation = 0.1\n", "augmentation = 0.1 should be table"),
        ("[configurations.a]\nsource_balance = 1\n", "source_balance = 1 should be bool"),
        (
            "[configurations.a]\nimage_sise = 64\n",
            r"\[configurations.a\]: unknown setting 'image_sise'",
        ),
        ('[configurations.a]\nepochs = "ten"\n', "epochs = 'ten' should be int"),
        ("[configurations.a]\nskull_strip = 1\n", "skull_strip = 1 should be bool"),
        ('[configurations.a]\narchitecture = "vgg"\n', "architecture 'vgg' is not one of"),
        ('default = "b"\n[configurations.a]\n', "default = 'b' names no"),
        ("epochs = 3\n", "no \\[configurations.NAME\\] table"),
        ("[configurations.a\n", "is not valid TOML"),
    ],
)
def test_mistakes_name_the_file_and_the_setting(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=message) as error:
        load_sweep(path)
    assert str(path) in str(error.value)


def test_a_missing_sweep_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="BRAIN_PIPELINE_SWEEP_FILE"):
        load_sweep(tmp_path / "absent.toml")

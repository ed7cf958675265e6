"""The sweep file: named training configurations, one Dagster partition each.

A configuration lists only what differs from `TrainingConfig`'s defaults; `resolve` lays the
settings given at launch on top of it. The file is read and validated here, so a typo names
the file, the configuration and the setting instead of failing deep inside training.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brain_pipeline.core.locations import REPO_ROOT
from brain_pipeline.core.model.architectures import ARCHITECTURES, AugmentationConfig
from brain_pipeline.core.model.training import TrainingConfig

SWEEP_FILE_ENV = "BRAIN_PIPELINE_SWEEP_FILE"
# Settings a configuration may give: TrainingConfig's fields, with `augment` (a bool: the
# augmentation block on or off) and `augmentation`, a table of AugmentationConfig's fields
# laid over it (`augmentation = {noise = 0.03, blur = 0.5}`).
SETTINGS = {f.name: f.type for f in dataclasses.fields(TrainingConfig) if f.name != "augmentation"}
SETTINGS["augment"] = "bool"
SETTINGS["augmentation"] = "table"
AUGMENTATION_SETTINGS = {f.name: f.type for f in dataclasses.fields(AugmentationConfig)}
_TYPES = {"int": int, "float": (int, float), "bool": bool, "str": str, "table": dict}


def default_sweep_file() -> Path:
    """$BRAIN_PIPELINE_SWEEP_FILE, else `sweep.toml` in the repository."""
    return Path(os.environ.get(SWEEP_FILE_ENV) or REPO_ROOT / "sweep.toml").expanduser().resolve()


@dataclass(frozen=True)
class Sweep:
    path: Path
    default: str
    configurations: dict[str, dict[str, Any]]

    @property
    def names(self) -> list[str]:
        return list(self.configurations)

    def resolve(self, name: str, overrides: dict[str, Any] | None = None) -> TrainingConfig:
        """The configuration `name`, with `overrides` (settings given at launch) on top."""
        if name not in self.configurations:
            raise ValueError(
                f"{self.path}: no configuration {name!r}; it has {', '.join(self.names)}"
            )
        settings = {**self.configurations[name], **(overrides or {})}
        _validate(settings, f"{self.path}: [configurations.{name}]")
        augment = settings.pop("augment", True)
        augmentation = AugmentationConfig() if augment else NO_AUGMENTATION
        augmentation = dataclasses.replace(augmentation, **settings.pop("augmentation", {}))
        return TrainingConfig(**settings, augmentation=augmentation)


NO_AUGMENTATION = AugmentationConfig(
    flip=False, rotation=0, zoom=0, contrast=0, brightness=0, noise=0, blur=0
)


def load_sweep(path: Path | None = None) -> Sweep:
    """Read and validate a sweep file (default: `default_sweep_file()`)."""
    path = Path(path) if path else default_sweep_file()
    if not path.is_file():
        raise FileNotFoundError(
            f"sweep file {path} does not exist; create it (see sweep.toml in the repository) "
            f"or point ${SWEEP_FILE_ENV} at one"
        )
    try:
        document = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML: {exc}") from exc
    configurations = document.get("configurations")
    if not isinstance(configurations, dict) or not configurations:
        raise ValueError(f"{path}: no [configurations.NAME] table; add at least one")
    unknown = set(document) - {"default", "configurations"}
    if unknown:
        raise ValueError(f"{path}: unknown top-level keys {sorted(unknown)}")
    for name, settings in configurations.items():
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"{path}: configuration name {name!r}: use letters, digits, _ and -")
        _validate(settings, f"{path}: [configurations.{name}]")
    default = document.get("default", next(iter(configurations)))
    if default not in configurations:
        raise ValueError(f"{path}: default = {default!r} names no [configurations.*] table")
    return Sweep(path, default, configurations)


def _validate(settings: dict[str, Any], where: str) -> None:
    _check_types(settings, SETTINGS, where)
    _check_types(settings.get("augmentation", {}), AUGMENTATION_SETTINGS, f"{where} augmentation")
    architecture = settings.get("architecture")
    if architecture is not None and architecture not in ARCHITECTURES:
        raise ValueError(
            f"{where}: architecture {architecture!r} is not one of {', '.join(ARCHITECTURES)}"
        )


def _check_types(settings: dict[str, Any], known: dict[str, Any], where: str) -> None:
    for key, value in settings.items():
        if key not in known:
            raise ValueError(f"{where}: unknown setting {key!r}; known: {', '.join(known)}")
        expected = _TYPES[str(known[key])]
        # bool is an int in Python; a number is not a bool, nor a bool a number here.
        wrong_bool = isinstance(value, bool) != (expected is bool)
        if wrong_bool or not isinstance(value, expected):
            raise ValueError(f"{where}: {key} = {value!r} should be {known[key]}")

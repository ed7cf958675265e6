"""Raw datasets: where they live, which folder means which class, and their fingerprint.

A raw-data root holds one folder per dataset download. A `datasets.toml` in the root may
declare the datasets and override the class mapping; without it every top-level folder is a
dataset (folders starting with `_` or `.` are not) and labels come from the known Kaggle
folder names, found at any nesting depth.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from brain_pipeline.core.classes import ALZHEIMER, HEALTHY, TARGET_CLASSES, TUMOR
from brain_pipeline.core.data import subjects
from brain_pipeline.core.data.mask_conventions import MIRROR_FOLDER, MaskConvention

# The original study's mapping, extended to the other common Kaggle layouts.
DEFAULT_CLASS_MAP: dict[str, str] = {
    # Navoneel / Br35H
    "yes": TUMOR,
    "no": HEALTHY,
    # preetviradiya
    "Brain Tumor": TUMOR,
    "Healthy": HEALTHY,
    # Alzheimer 4-class (tourist55) and its preprocessed variant
    "MildDemented": ALZHEIMER,
    "ModerateDemented": ALZHEIMER,
    "VeryMildDemented": ALZHEIMER,
    "NonDemented": HEALTHY,
    "Mild_Demented": ALZHEIMER,
    "Moderate_Demented": ALZHEIMER,
    "Very_Mild_Demented": ALZHEIMER,
    "Non_Demented": HEALTHY,
    # 4-class tumour set
    "glioma": TUMOR,
    "meningioma": TUMOR,
    "pituitary": TUMOR,
    "notumor": HEALTHY,
    # ADNI AD/NC slice exports
    "AD": ALZHEIMER,
    "NC": HEALTHY,
    # LGG segmentation (Buda et al.): every kaggle_3m slice shows a tumour
    "kaggle_3m": TUMOR,
}

# Folder labels of the Alzheimer source, healthy ones included: healthy vs Alzheimer within
# this one source (one scanner style) is the clinically hard comparison.
ALZHEIMER_SOURCE_LABELS = frozenset(
    {"MildDemented", "ModerateDemented", "VeryMildDemented", "NonDemented"}
    | {"Mild_Demented", "Moderate_Demented", "Very_Mild_Demented", "Non_Demented"}
)

CONFIG_FILE_NAME = "datasets.toml"
# "training": the dataset feeds the index and the splits. "external": it is ingested and
# grouped like the others but only ever scored (`external_evaluation`), never trained on.
ROLES = ("training", "external")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp"})


class DatasetConfigError(ValueError):
    """A user-fixable problem with the raw-data root or its datasets.toml."""


@dataclass(frozen=True)
class DatasetSpec:
    """One raw dataset: a name (used in asset keys), its root folder and its class map."""

    name: str
    root: Path
    class_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_CLASS_MAP))
    role: str = "training"
    # Finds the subject id in a file's path (subjects.py); None: the built-in layouts'.
    group_pattern: re.Pattern | None = None
    # Where its lesion masks are (mask_conventions.py): beside the images by default.
    lesion_masks: MaskConvention = field(default_factory=MaskConvention)


@dataclass(frozen=True)
class RawDataConfig:
    data_dir: Path
    datasets: tuple[DatasetSpec, ...]

    @property
    def roots(self) -> dict[str, Path]:
        """Dataset name -> its root folder, to find a manifest row's file."""
        return {spec.name: spec.root for spec in self.datasets}

    @property
    def mask_roots(self) -> dict[str, Path]:
        """Dataset name -> the folder its manifest rows' `lesion_mask` paths start from."""
        return {spec.name: spec.lesion_masks.root(spec.root) for spec in self.datasets}

    def names(self, role: str) -> list[str]:
        """The datasets of one role ("training" or "external"), in declaration order."""
        return [spec.name for spec in self.datasets if spec.role == role]


def load_raw_data_config(data_dir: Path) -> RawDataConfig:
    """Read `datasets.toml` in `data_dir` if present, otherwise discover the datasets."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DatasetConfigError(
            f"raw-data folder {data_dir} does not exist; set BRAIN_PIPELINE_DATA_DIR to a folder "
            "holding one sub-folder per dataset download"
        )
    config_path = data_dir / CONFIG_FILE_NAME
    if not config_path.exists():
        datasets = tuple(
            DatasetSpec(
                name=_asset_safe_name(child.name),
                root=child,
                lesion_masks=_default_masks(data_dir, child),
            )
            for child in sorted(data_dir.iterdir())
            if child.is_dir() and not child.name.startswith(("_", "."))
        )
        return RawDataConfig(data_dir, datasets)
    return _parse_config(data_dir, config_path)


def _default_masks(data_dir: Path, root: Path) -> MaskConvention:
    """Masks in the root's `_lesion_masks/<dataset folder>/` where it exists, else beside."""
    mirror = data_dir / MIRROR_FOLDER / root.name
    return MaskConvention(folder=mirror) if mirror.is_dir() else MaskConvention()


# The keys datasets.toml knows, where they belong, and what each means (for the errors).
TOP_LEVEL_KEYS = {
    "datasets": "one [datasets.NAME] table per dataset",
    "class_map": "folder name -> class, for every dataset",
}
DATASET_KEYS = {
    "path": "the dataset's folder, relative to the raw-data root",
    "role": f"one of {', '.join(ROLES)}",
    "class_map": "folder name -> class for this dataset, over the top-level class_map",
    "group_pattern": "a regex whose (?P<subject>...) group reads the subject id from a path",
    "lesion_masks": '{suffix = "_mask"} (beside the images) or {folder = "PATH"} (a mirror)',
}


def _parse_config(data_dir: Path, config_path: Path) -> RawDataConfig:
    try:
        raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise DatasetConfigError(f"{config_path}: not valid TOML ({exc})") from exc
    _refuse_unknown_keys(config_path, raw, "the top level", TOP_LEVEL_KEYS, DATASET_KEYS)
    class_map = _class_map(config_path, raw, "class_map", dict(DEFAULT_CLASS_MAP))
    tables = raw.get("datasets", {})
    if not isinstance(tables, dict) or not tables:
        raise DatasetConfigError(f"{config_path}: declares no [datasets.NAME] table")
    datasets = [
        _dataset_spec(data_dir, config_path, name, table, class_map)
        for name, table in tables.items()
    ]
    if not any(spec.role == "training" for spec in datasets):
        raise DatasetConfigError(
            f"{config_path}: every dataset is external; at least one must be for training"
        )
    return RawDataConfig(data_dir, tuple(datasets))


def _dataset_spec(
    data_dir: Path, config_path: Path, name: str, table: object, class_map: dict[str, str]
) -> DatasetSpec:
    """One [datasets.NAME] table, checked key by key."""
    where = f"[datasets.{name}]"
    if not isinstance(table, dict):
        raise DatasetConfigError(f"{config_path}: datasets.{name} must be a table {where}")
    _refuse_unknown_keys(config_path, table, where, DATASET_KEYS, TOP_LEVEL_KEYS)
    path = table.get("path", name)
    if not isinstance(path, str):
        raise DatasetConfigError(f"{config_path}: {where} path must be a string, got {path!r}")
    root = data_dir / path
    if not root.is_dir():
        raise DatasetConfigError(
            f"{config_path}: dataset {name!r} points at {root}, which is not a folder"
        )
    role = table.get("role", "training")
    if role not in ROLES:
        raise DatasetConfigError(
            f"{config_path}: dataset {name!r} has role {role!r}; use one of {', '.join(ROLES)}"
        )
    own_map = _class_map(config_path, table, f"datasets.{name}.class_map", dict(class_map))
    pattern = None
    if "group_pattern" in table:
        try:
            pattern = subjects.compile_group_pattern(table["group_pattern"])
        except ValueError as exc:
            raise DatasetConfigError(f"{config_path}: dataset {name!r}: {exc}") from exc
    return DatasetSpec(
        name=_asset_safe_name(name),
        root=root,
        class_map=own_map,
        role=role,
        group_pattern=pattern,
        lesion_masks=_mask_convention(data_dir, config_path, name, table, root),
    )


def _mask_convention(
    data_dir: Path, config_path: Path, name: str, table: dict, root: Path
) -> MaskConvention:
    """The dataset's `lesion_masks`: {suffix = "..."} or {folder = "..."}, else the default."""
    setting = table.get("lesion_masks")
    if setting is None:
        return _default_masks(data_dir, root)
    where = f"{config_path}: [datasets.{name}] lesion_masks"
    if not isinstance(setting, dict) or len(setting) != 1 or set(setting) - {"suffix", "folder"}:
        raise DatasetConfigError(
            f'{where} must be {{suffix = "_mask"}} (masks beside the images) or '
            f'{{folder = "PATH"}} (a folder mirroring the image tree), got {setting!r}'
        )
    ((kind, value),) = setting.items()
    if not isinstance(value, str) or not value:
        raise DatasetConfigError(f"{where}: {kind} must be a non-empty string, got {value!r}")
    if kind == "suffix":
        return MaskConvention(suffix=value)
    folder = data_dir / value
    if not folder.is_dir():
        raise DatasetConfigError(f"{where}: folder {folder} does not exist")
    return MaskConvention(folder=folder)


def _class_map(config_path: Path, table: dict, where: str, base: dict[str, str]) -> dict[str, str]:
    """`base` with the table's `class_map` laid over it, each target checked."""
    given = table.get("class_map", {})
    if not isinstance(given, dict):
        raise DatasetConfigError(f"{config_path}: {where} must be a table [{where}]")
    for label, target in given.items():
        if target not in TARGET_CLASSES and target != "":
            raise DatasetConfigError(
                f"{config_path}: {where} maps {label!r} to {target!r}; use one of "
                f'{", ".join(TARGET_CLASSES)} (or "" to ignore that folder)'
            )
        base[label] = target
    return base


def _refuse_unknown_keys(
    config_path: Path, table: dict, where: str, known: dict[str, str], elsewhere: dict[str, str]
) -> None:
    """A misspelt or misplaced key would otherwise be ignored without a word."""
    top = where == "the top level"
    for key in set(table) - set(known):
        if key in elsewhere:
            hint = (
                " (it belongs in a [datasets.NAME] table)"
                if top
                else " (it belongs at the top level, above the first [table])"
            )
        else:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.7)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
        listing = ", ".join(f"{k} ({meaning})" for k, meaning in known.items())
        place = "at the top level" if top else f"in {where}"
        raise DatasetConfigError(
            f"{config_path}: unknown key {key!r} {place}{hint}. Keys {place}: {listing}"
        )


def _asset_safe_name(name: str) -> str:
    """Dagster asset key parts allow letters, digits and underscores only."""
    cleaned = "".join(ch if ch.isalnum() else "_" for ch in name.strip().lower())
    return cleaned.strip("_") or "dataset"


def source_label(relative_path: str, class_map: Mapping[str, str]) -> str | None:
    """The folder label that decides a file's class: the deepest folder named in the map."""
    folders = Path(relative_path).parts[:-1]
    lowered = {label.lower(): label for label in class_map}
    for folder in reversed(folders):
        if folder in class_map:
            return folder
        if folder.lower() in lowered:
            return lowered[folder.lower()]
    return None


def iter_dataset_files(root: Path) -> Iterator[str]:
    """Relative paths (POSIX) of every regular file under `root`, sorted, symlinks not followed.

    Symlinked files are listed (and later read) only if they resolve inside `root`, so no
    link can lead outside the dataset and a link loop cannot hang the walk.
    """
    root = Path(root)
    resolved_root = root.resolve()
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for filename in filenames:
            full = Path(dirpath) / filename
            if full.is_symlink():
                target = full.resolve()
                if not target.is_file() or not target.is_relative_to(resolved_root):
                    continue
            found.append(full.relative_to(root).as_posix())
    yield from sorted(found)


def dataset_fingerprint(root: Path, mask_folder: Path | None = None) -> str:
    """A cheap content fingerprint: sha256 over (path, size, mtime) of every file, and of
    every file of the dataset's lesion-mask folder where it lies outside `root`.

    Used as the Dagster data version of a raw dataset, so any added, removed or rewritten file
    (or mask) changes it without reading image bytes.
    """
    digest = hashlib.sha256()
    folders = [("", Path(root))]
    if mask_folder is not None and not Path(mask_folder).resolve().is_relative_to(
        Path(root).resolve()
    ):
        folders.append((f"{MIRROR_FOLDER}/", Path(mask_folder)))
    for prefix, folder in folders:
        for relative in iter_dataset_files(folder):
            stat = (folder / relative).stat()
            entry = f"{prefix}{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n"
            digest.update(os.fsencode(entry))
    return digest.hexdigest()[:16]


def dataset_fingerprints(raw: RawDataConfig) -> dict[str, str]:
    """Each configured dataset's fingerprint, by dataset name."""
    return {
        spec.name: dataset_fingerprint(spec.root, spec.lesion_masks.folder) for spec in raw.datasets
    }

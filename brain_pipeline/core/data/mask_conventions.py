"""Where a dataset keeps its ground-truth lesion masks, and which image each belongs to.

One convention per dataset (`lesion_masks` in its datasets.toml table):

- beside the images, the default (the LGG `kaggle_3m` layout): `<folder>/<stem>_mask.<suffix>`
  belongs to `<folder>/<stem>.<any image suffix>`; `{suffix = "_seg"}` for another ending;
- a folder mirroring the image tree, `{folder = "masks/brats"}` (relative to the raw-data
  root): the mask of `<a>/<b>/<c>.jpg` is `<folder>/<a>/<b>/<c>.<any image suffix>`. Without
  a setting, a raw-data root's `_lesion_masks/<dataset folder>/` is that folder (the
  synthetic phantoms' layout).

A mask is never an image to learn from. The manifest records each image's mask
(`lesion_mask`) relative to the convention's root (the dataset folder, or the mask folder),
and refuses, with a note naming both files, a mask whose size differs from its image's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

MASK_SUFFIX = "_mask"
# The mirror folder a raw-data root may hold for its datasets, one sub-folder per dataset.
MIRROR_FOLDER = "_lesion_masks"


@dataclass(frozen=True)
class MaskConvention:
    suffix: str = MASK_SUFFIX
    # A folder mirroring the dataset's image tree (absolute); None: masks beside the images.
    folder: Path | None = None

    def root(self, dataset_root: Path) -> Path:
        """The folder the recorded mask paths are relative to."""
        return self.folder if self.folder is not None else dataset_root

    def pair(
        self,
        dataset_root: Path,
        files: list[str],
        image_suffixes: Iterable[str],
        mask_files: Iterable[str] = (),
    ) -> tuple[dict[str, str], dict[str, str | None]]:
        """(image -> its mask, relative to `root`; a file of the dataset that is a mask ->
        its image, or None where it has none). `files` are the dataset's, `mask_files` the
        mirror folder's (both as `sources.iter_dataset_files` lists them)."""
        if self.folder is None:
            return masks_beside_images(files, image_suffixes, self.suffix)
        suffixes = {s.lower() for s in image_suffixes}
        masks = {
            str(PurePosixPath(relative).with_suffix("")): relative
            for relative in mask_files
            if PurePosixPath(relative).suffix.lower() in suffixes
        }
        return self._mirrored(dataset_root, files, suffixes, masks)

    def _mirrored(self, dataset_root: Path, files: list[str], suffixes: set[str], masks: dict):
        """Pairs by path without suffix; a mirror inside the dataset holds masks, not images."""
        assert self.folder is not None
        inside = _relative_to(self.folder, dataset_root)
        image_of = {}
        if inside is not None:
            for relative in masks.values():
                image_of[f"{inside}/{relative}"] = None
        mask_of = {}
        for relative in files:
            path = PurePosixPath(relative)
            if relative in image_of or path.suffix.lower() not in suffixes:
                continue
            mask = masks.get(str(path.with_suffix("")))
            if mask is not None:
                mask_of[relative] = mask
                if inside is not None:
                    image_of[f"{inside}/{mask}"] = relative
        return mask_of, image_of


def _relative_to(folder: Path, root: Path) -> str | None:
    try:
        return folder.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None


def is_lesion_mask(relative_path: str, suffix: str = MASK_SUFFIX) -> bool:
    stem = PurePosixPath(relative_path.replace("\\", "/")).stem
    return stem.lower().endswith(suffix.lower())


def masks_beside_images(
    relative_paths: Iterable[str], image_suffixes: Iterable[str], suffix: str = MASK_SUFFIX
) -> tuple[dict[str, str], dict[str, str | None]]:
    """Pair lesion masks with their images: (image -> its mask, mask -> its image or None).

    `<folder>/<stem><suffix>.<any image suffix>` belongs to `<folder>/<stem>.<any image
    suffix>`.
    """
    suffixes = {s.lower() for s in image_suffixes}
    images: dict[tuple[str, str], str] = {}
    masks = []
    for relative in relative_paths:
        path = PurePosixPath(relative.replace("\\", "/"))
        if path.suffix.lower() not in suffixes:
            continue
        if is_lesion_mask(relative, suffix):
            masks.append((relative, path))
        else:
            images[(str(path.parent), path.stem.lower())] = relative
    mask_of, image_of = {}, {}
    for relative, path in masks:
        image = images.get((str(path.parent), path.stem[: -len(suffix)].lower()))
        image_of[relative] = image
        if image is not None:
            mask_of[image] = relative
    return mask_of, image_of


def mask_size_problem(mask_file: Path, image_size: tuple[int, int]) -> str | None:
    """Why a mask cannot be used for an image of `image_size` (width, height), or None."""
    try:
        with Image.open(mask_file) as mask:
            size = mask.size
    except (OSError, ValueError) as exc:
        return f"lesion mask {mask_file} cannot be read ({exc}): not used"
    if tuple(size) != tuple(image_size):
        return (
            f"lesion mask {mask_file} is {size[0]}x{size[1]} but its image is "
            f"{image_size[0]}x{image_size[1]}: not used"
        )
    return None

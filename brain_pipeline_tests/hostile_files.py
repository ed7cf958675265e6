"""Files that real downloads hold beside their images, written into a dataset folder.

The manifest tests check each file's row; the session's materialization (conftest) sends the
same files through the whole job, so that a later step cannot break ordinary downloads
without a test failing.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

# Relative path -> the status the manifest must give it. Symlinks and the non-UTF-8 name are
# checked on their own (their paths are not plain strings).
EXPECTED_STATUS = {
    "nested/yes/good.jpg": "ok",
    "nested/yes/empty.jpg": "rejected",
    "nested/yes/page.jpg": "rejected",
    "nested/yes/truncated.jpg": "rejected",
    "nested/yes/sixteen bit.png": "ok",
    "no/cmyk.jpg": "ok",
    "no/palette.png": "ok",
    "no/alpha.png": "ok",
    "no/animated.gif": "ok",
    "no/naïve ü.jpg": "ok",
    "no/broken chunk.png": "rejected",
    "no/rotated.jpg": "ok",
    "no/.DS_Store": "skipped",
    "no/notes.txt": "skipped",
    "no/readme.txt": "skipped",
    "no/labels.csv": "skipped",
    "no/Thumbs.db": "skipped",
    "unlabelled/x.jpg": "ok",  # ok, but unmapped: no folder names a class
    "nested/yes/good_mask.png": "skipped",  # the lesion mask of good.jpg
    "nested/yes/stray_mask.png": "skipped",  # a lesion mask with no image beside it
    "nested/yes/misfit.jpg": "ok",  # its lesion mask is of another size: the image is kept
    "nested/yes/misfit_mask.png": "skipped",  # ... and the mask is refused, named
}


def jpeg(value: int = 120, size=(40, 48), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(value)
    array = rng.integers(0, 255, size=(size[1], size[0]), dtype=np.uint8)
    Image.fromarray(array).convert(mode).save(buffer, format="JPEG")
    return buffer.getvalue()


def png(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def write_hostile_dataset(root: Path, outside: Path) -> None:
    """Every kind of file the ingestion knows, in a `yes`/`no` layout under `root`; `outside`
    (a folder outside `root`) receives the target of a link that leads out of the dataset."""
    yes, no = root / "nested" / "yes", root / "no"
    yes.mkdir(parents=True)
    no.mkdir(parents=True)
    _write_unreadable(yes, no)
    _write_odd_modes(yes, no)
    _write_non_images(no)
    _write_links_and_names(root, no, outside)
    (root / "unlabelled").mkdir()
    (root / "unlabelled" / "x.jpg").write_bytes(jpeg(7))


def _write_unreadable(yes: Path, no: Path) -> None:
    (yes / "good.jpg").write_bytes(jpeg(1))
    (yes / "good_mask.png").write_bytes(png(Image.new("L", (40, 48), 255)))
    (yes / "stray_mask.png").write_bytes(png(Image.new("L", (16, 16), 0)))
    (yes / "misfit.jpg").write_bytes(jpeg(2))
    (yes / "misfit_mask.png").write_bytes(png(Image.new("L", (48, 40), 255)))  # transposed
    (yes / "empty.jpg").write_bytes(b"")
    (yes / "page.jpg").write_bytes(b"<html><body>404 not found</body></html>")
    (yes / "truncated.jpg").write_bytes(jpeg(2, size=(200, 200))[:600])
    good_png = bytearray(png(Image.new("L", (16, 16), 90)))
    idat = good_png.index(b"IDAT")
    good_png[idat + 6] ^= 0xFF  # corrupt the compressed data: its CRC no longer matches
    (no / "broken chunk.png").write_bytes(bytes(good_png))


def _write_odd_modes(yes: Path, no: Path) -> None:
    sixteen = Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16))
    (yes / "sixteen bit.png").write_bytes(png(sixteen))
    (no / "cmyk.jpg").write_bytes(jpeg(3, mode="CMYK"))
    palette = Image.fromarray(np.full((30, 30), 7, np.uint8)).convert("P")
    (no / "palette.png").write_bytes(png(palette, transparency=0))
    rgba = Image.new("RGBA", (20, 20), (200, 100, 50, 128))
    (no / "alpha.png").write_bytes(png(rgba))
    frames = [Image.new("L", (16, 16), v) for v in (10, 200)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    (no / "animated.gif").write_bytes(buffer.getvalue())
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    buffer = io.BytesIO()
    Image.new("L", (40, 20), 120).save(buffer, format="JPEG", exif=exif)
    (no / "rotated.jpg").write_bytes(buffer.getvalue())


def _write_non_images(no: Path) -> None:
    (no / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (no / "notes.txt").write_text("scanner notes")
    (no / "readme.txt").write_text("hello\n")
    (no / "labels.csv").write_text("file,label\ncmyk.jpg,no\n")
    (no / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")


def _write_links_and_names(root: Path, no: Path, outside: Path) -> None:
    (no / "naïve ü.jpg").write_bytes(jpeg(4))
    os.symlink(no / "naïve ü.jpg", no / "link_inside.jpg")
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "outside.jpg").write_bytes(jpeg(5))
    os.symlink(outside / "outside.jpg", no / "link_outside.jpg")
    os.symlink(root, root / "nested" / "loop")
    bad_name = os.fsencode(str(no)) + b"/bad\xff name.jpg"
    with open(bad_name, "wb") as handle:
        handle.write(jpeg(6))

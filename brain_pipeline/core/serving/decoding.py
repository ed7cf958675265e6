"""Turning untrusted bytes into a Pillow image, or a clear error saying what is wrong.

Every check runs before the pixels are decoded where it can (size limits, pixel counts from
the header), so a decompression bomb or a huge frame costs a header read, not the memory.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from brain_pipeline.core.imaging.preprocessing import load_image

# The formats the training data come in, plus the lossless ones people convert to. Pillow
# can open many more (EPS runs Ghostscript, for one); an upload is not allowed to pick.
ACCEPTED_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "GIF", "WEBP")
ACCEPTED_CONTENT_TYPES = ("image/", "application/octet-stream")
# Modes the model has a meaning for: 8-bit grey, colour, palette, with or without alpha.
ACCEPTED_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX")


class InputError(ValueError):
    """An upload the service refuses: ``status`` is the HTTP status, ``code`` a stable name."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.filename: str | None = None  # set by the caller that knows the upload's name

    def as_dict(self) -> dict:
        return {"error": self.code, "detail": self.message, "filename": self.filename}


@dataclass(frozen=True)
class UploadLimits:
    """What one upload may be: bytes on the wire, pixels once decoded, images per request."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000  # e.g. 6,300 x 6,300; MRI slices are under 1,000 x 1,000
    max_images: int = 64

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels", "max_images"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"upload limit {name} must be at least 1, got {getattr(self, name)}"
                )


def check_content_type(content_type: str | None, filename: str | None) -> None:
    """A declared type that is not an image (text/plain, application/pdf...) is refused."""
    if content_type and not content_type.lower().startswith(ACCEPTED_CONTENT_TYPES):
        raise InputError(
            415,
            "unsupported_content_type",
            f"{filename or 'upload'}: content type {content_type!r} is not an image; "
            "send image/png, image/jpeg (or application/octet-stream)",
        )


def decode_image(data: bytes, limits: UploadLimits, filename: str | None = None) -> Image.Image:
    """Decode one upload; raise InputError naming the problem for anything unusable."""
    name = filename or "upload"
    if not data:
        raise InputError(400, "empty_upload", f"{name}: the upload is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise InputError(
            413,
            "upload_too_large",
            f"{name}: {len(data):,} bytes is more than the limit of {limits.max_bytes:,}",
        )
    image = _open(data, name)
    _check_dimensions(image, limits, name)
    _check_mode(image, name)
    return _load(image, name)


def _open(data: bytes, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(413, "decompression_bomb", f"{name}: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise InputError(
            415,
            "not_an_image",
            f"{name}: not a readable image (accepted formats: {', '.join(ACCEPTED_FORMATS)})",
        ) from exc


def _check_dimensions(image: Image.Image, limits: UploadLimits, name: str) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise InputError(422, "empty_image", f"{name}: the image has no pixels ({width}x{height})")
    if width * height > limits.max_pixels:
        raise InputError(
            413,
            "image_too_large",
            f"{name}: {width}x{height} = {width * height:,} pixels is more than the limit of "
            f"{limits.max_pixels:,} (a decompression bomb, or a frame no MRI slice needs)",
        )


def _check_mode(image: Image.Image, name: str) -> None:
    if image.mode in ACCEPTED_MODES:
        return
    if image.mode.startswith(("I", "F")):
        problem = (
            f"{image.mode} is a 16/32-bit image; the model was trained on 8-bit slices and how "
            "to window yours is not knowable here. Export an 8-bit PNG or JPEG"
        )
    elif image.mode == "CMYK":
        problem = "CMYK is a print colour space (a scan of a printout?); send grey or RGB"
    else:
        problem = f"pixel mode {image.mode} is not supported; send 8-bit grey or RGB"
    raise InputError(422, "unsupported_pixel_format", f"{name}: {problem}")


def _load(image: Image.Image, name: str) -> Image.Image:
    try:
        return load_image(image)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(
            422, "corrupt_image", f"{name}: the image data is truncated or corrupt ({exc})"
        ) from exc

"""Uploads a service must refuse, each with the status and error code it should get.

Shared by the decoding unit tests and the HTTP tests, so both cover every case.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A small, valid-looking PNG that declares `width` x `height` grey pixels: the shape of
    a decompression bomb (a few hundred bytes on the wire, gigabytes once decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * (width + 1) * 4, 9)  # a few rows; the rest never read
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def slice_like(size: int = 120) -> Image.Image:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    head = ((x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.16) * 160 + rng.normal(0, 8, (size, size))
    return Image.fromarray(head.clip(0, 255).astype(np.uint8), mode="L")


def bad_uploads() -> dict[str, tuple[bytes, str, int, str]]:
    """name -> (bytes, content type, expected status, expected error code)."""
    jpeg = encoded(slice_like().convert("RGB"), "JPEG")
    png = encoded(slice_like(), "PNG")
    sixteen = Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16))
    return {
        "empty": (b"", "image/png", 400, "empty_upload"),
        "truncated_jpeg": (jpeg[: len(jpeg) // 2], "image/jpeg", 422, "corrupt_image"),
        "truncated_png": (png[: len(png) // 2], "image/png", 422, "corrupt_image"),
        "not_an_image": (b"%PDF-1.7 not a picture at all\n" * 20, "image/png", 415, "not_an_image"),
        "decompression_bomb": (
            png_header_only(40_000, 40_000),
            "image/png",
            413,
            "decompression_bomb",
        ),
        "huge_dimensions": (png_header_only(7_000, 7_000), "image/png", 413, "image_too_large"),
        "sixteen_bit": (encoded(sixteen, "PNG"), "image/png", 422, "unsupported_pixel_format"),
        "cmyk": (
            encoded(Image.new("CMYK", (64, 64), (0, 50, 100, 0)), "JPEG"),
            "image/jpeg",
            422,
            "unsupported_pixel_format",
        ),
        "wrong_content_type": (png, "text/plain", 415, "unsupported_content_type"),
    }

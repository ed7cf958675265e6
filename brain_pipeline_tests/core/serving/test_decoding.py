"""Untrusted bytes: every bad upload is refused with a status and a message naming it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from brain_pipeline.core.serving.decoding import (
    InputError,
    UploadLimits,
    check_content_type,
    decode_image,
)
from brain_pipeline_tests.core.serving.bad_inputs import bad_uploads, encoded, slice_like

BAD = bad_uploads()


@pytest.mark.parametrize("case", sorted(BAD))
def test_every_bad_upload_is_refused_with_its_reason(case: str) -> None:
    data, content_type, status, code = BAD[case]
    with pytest.raises(InputError) as refused:
        check_content_type(content_type, f"{case}.bin")
        decode_image(data, UploadLimits(), f"{case}.bin")
    assert (refused.value.status, refused.value.code) == (status, code)
    assert refused.value.message.startswith(f"{case}.bin: ")


def test_an_upload_over_the_byte_limit_is_refused_before_decoding() -> None:
    data = encoded(slice_like(200), "PNG")
    with pytest.raises(InputError) as refused:
        decode_image(data, UploadLimits(max_bytes=len(data) - 1), "big.png")
    assert refused.value.status == 413 and refused.value.code == "upload_too_large"
    assert f"{len(data):,} bytes" in refused.value.message


@pytest.mark.parametrize(
    ("mode", "fmt"), [("L", "PNG"), ("RGB", "JPEG"), ("RGBA", "PNG"), ("P", "GIF"), ("1", "BMP")]
)
def test_ordinary_images_decode(mode: str, fmt: str) -> None:
    image = decode_image(encoded(slice_like().convert(mode), fmt), UploadLimits(), "ok")
    assert image.size == (120, 120)
    assert np.asarray(image.convert("L")).max() > 100


def test_formats_outside_the_list_are_refused_even_if_pillow_reads_them() -> None:
    data = encoded(slice_like(), "PPM")
    assert Image.open(__import__("io").BytesIO(data)).format == "PPM"
    with pytest.raises(InputError, match="accepted formats: PNG, JPEG"):
        decode_image(data, UploadLimits(), "x.ppm")


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_pixels"):
        UploadLimits(max_pixels=0)

"""The shortcut audit fires on a confounded dataset and stays quiet on a clean one."""

from __future__ import annotations

import numpy as np
import pandas as pd

from brain_pipeline.core.data.shortcuts import (
    probe_accuracy,
    raw_file_statistics,
    tensor_statistics,
)


def _rows(n: int, confounded: bool, seed: int = 0) -> pd.DataFrame:
    """Manifest-like rows; when confounded, tumour images are all 512 px PNG, others 256 JPEG."""
    rng = np.random.default_rng(seed)
    labels = np.array(["healthy_brain", "tumor_brain", "alzheimer_brain"])[np.arange(n) % 3]
    if confounded:
        size = np.where(labels == "tumor_brain", 512, 256)
        formats = np.where(labels == "tumor_brain", "PNG", "JPEG")
    else:
        size = rng.choice([256, 512], n)
        formats = rng.choice(["PNG", "JPEG"], n)
    thumbs = [rng.integers(0, 255, 1024, dtype=np.uint8).tobytes() for _ in range(n)]
    return pd.DataFrame(
        {
            "width": size,
            "height": size,
            "mode": "RGB",
            "format": formats,
            "thumbnail": thumbs,
            "target_class": labels,
            "group_id": [f"g{i // 2}" for i in range(n)],
        }
    )


def test_audit_fires_when_image_size_gives_the_class_away() -> None:
    rows = _rows(240, confounded=True)
    result = probe_accuracy(raw_file_statistics(rows), rows["target_class"], rows["group_id"])
    assert result.accuracy > 0.6  # tumour found by size; the other two by chance
    assert {"width", "height", "format"} <= set(result.leaking_features)


def test_audit_stays_quiet_on_a_clean_dataset() -> None:
    rows = _rows(240, confounded=False)
    result = probe_accuracy(raw_file_statistics(rows), rows["target_class"], rows["group_id"])
    assert result.accuracy < result.chance + 0.15
    assert result.leaking_features == []


def test_tensor_statistics_shape_and_values() -> None:
    tensors = np.zeros((3, 8, 8, 1), np.float16)
    tensors[1] = 1.0
    stats = tensor_statistics(tensors)
    assert list(stats.columns) == ["mean_intensity", "std_intensity", "foreground_fraction"]
    assert stats["mean_intensity"].tolist() == [0.0, 1.0, 0.0]
    assert stats["foreground_fraction"].tolist() == [0.0, 1.0, 0.0]

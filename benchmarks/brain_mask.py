"""Per-image cost of the brain mask (skull stripping, heat-in-brain) at several input sizes.

    .venv/bin/python benchmarks/brain_mask.py [--data-dir DIR] [--images N] [--sizes 128 256 512]

Preprocesses N images of the data folder (every file under it, shuffled with a fixed seed)
to each model-input size, as strip_skull sees them, then times estimate_brain_mask on each.
Prints one line per size; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

from brain_pipeline.core.imaging.brain_mask import estimate_brain_mask
from brain_pipeline.core.imaging.preprocessing import Preprocessing, load_image, preprocess_image
from brain_pipeline.core.locations import default_data_dir

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}


def sample_files(data_dir: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` image files under ``data_dir`` (lesion masks excluded), a seeded shuffle."""
    files = sorted(
        path
        for path in data_dir.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES and "_lesion_masks" not in path.parts
    )
    if not files:
        raise SystemExit(f"no images under {data_dir}; pass --data-dir with image folders")
    random.Random(seed).shuffle(files)
    return files[:n]


def time_masks(files: list[Path], size: int) -> list[float]:
    """Seconds per image for the brain mask of each file's model input at ``size`` px."""
    # Skull stripping masks the percentile-scaled input, before equalisation.
    preprocessing = Preprocessing(size, skull_strip=False, intensity="percentile")
    inputs = [preprocess_image(load_image(path), preprocessing) for path in files]
    estimate_brain_mask(inputs[0])  # warm-up
    seconds = []
    for array in inputs:
        started = time.perf_counter()
        estimate_brain_mask(array)
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    args = parser.parse_args()
    files = sample_files(args.data_dir, args.images)
    results = {}
    for size in args.sizes:
        seconds = np.array(time_masks(files, size)) * 1000
        results[size] = {
            "median_ms": round(float(np.median(seconds)), 2),
            "mean_ms": round(float(seconds.mean()), 2),
        }
        print(
            f"{size:>4} px: brain mask {results[size]['median_ms']:8.2f} ms median, "
            f"{results[size]['mean_ms']:8.2f} ms mean over {len(seconds)} images"
        )
    print(json.dumps({"data_dir": str(args.data_dir), "images": len(files), "sizes": results}))


if __name__ == "__main__":
    main()

"""Small downloads in the layouts whose names carry subject ids, written by the tests.

`write_adni_layout`: `train/{AD,NC}/<scan>_<slice>.jpeg` (ADNI slice exports);
`write_kaggle_3m_layout`: `kaggle_3m/TCGA_<inst>_<patient>_<date>/..._<slice>.png`, each with
its `_mask.png` beside it (the LGG segmentation set). Slices of one subject are unlike each
other on purpose: only the names say they belong together.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from brain_pipeline_tests.hostile_files import jpeg, png


def write_adni_layout(root: Path, scans_per_class: int = 3, slices: int = 3) -> list[str]:
    """The scan ids written, `<class>_<n>` style numbers as ADNI has them."""
    scans = []
    for label, offset in (("AD", 100), ("NC", 200)):
        folder = root / "train" / label
        folder.mkdir(parents=True)
        for scan in range(scans_per_class):
            scan_id = f"{offset + scan}{offset * 7 + scan}"
            scans.append(scan_id)
            for slice_number in range(slices):
                seed = offset * 100 + scan * 10 + slice_number
                (folder / f"{scan_id}_{4 * slice_number}.jpeg").write_bytes(
                    jpeg(seed, size=(48, 40))
                )
    return scans


def write_kaggle_3m_layout(root: Path, patients: int = 3, slices: int = 2) -> list[str]:
    """The patient ids written (`TCGA_<inst>_<patient>`); every image has a mask beside it."""
    patient_ids = []
    for patient in range(patients):
        patient_id = f"TCGA_CS_{4940 + patient}"
        patient_ids.append(patient_id)
        folder = root / "kaggle_3m" / f"{patient_id}_1996090{patient}"
        folder.mkdir(parents=True)
        for slice_number in range(slices):
            stem = f"{folder.name}_{10 + slice_number}"
            rng = np.random.default_rng(1000 + 10 * patient + slice_number)
            image = rng.integers(0, 255, size=(40, 40, 3), dtype=np.uint8)
            (folder / f"{stem}.png").write_bytes(png(Image.fromarray(image, "RGB")))
            mask = np.zeros((40, 40), np.uint8)
            mask[10 + slice_number : 20, 12:24] = 255
            (folder / f"{stem}_mask.png").write_bytes(png(Image.fromarray(mask, "L")))
    return patient_ids

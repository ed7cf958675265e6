"""The out-of-distribution guard: does an input look like the slices the model learned from?

Each image becomes one feature vector: the model's own penultimate features (what the
classifier sees after preprocessing) beside a few statistics of the image as uploaded (colour,
border, darkness, edges, aspect), which preprocessing would otherwise erase: a photo and an
MRI slice can look alike once grey and equalised. The score is the Mahalanobis distance to the
training split's features (Ledoit-Wolf shrunk covariance, so a few hundred images suffice);
the threshold is a high quantile of the validation split's scores, so about
``1 - quantile`` of real slices are refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.covariance import LedoitWolf
from sklearn.metrics import roc_auc_score

from brain_pipeline.core.artifacts import write_json

STATISTICS = ("chroma", "border_level", "dark_fraction", "edge_energy", "log_aspect", "spread")
GUARD_JSON, GUARD_ARRAYS = "ood_guard.json", "ood_guard.npz"
DEFAULT_QUANTILE = 0.99


def image_statistics(image: Image.Image) -> np.ndarray:
    """Six numbers about an upload as it arrived, in [0, 1] units, cheap at any size."""
    small = image.convert("RGB")
    small.thumbnail((128, 128))
    rgb = np.asarray(small, dtype=np.float32) / 255.0
    gray = rgb.mean(axis=2)
    chroma = np.abs(rgb[..., 0] - rgb[..., 1]) + np.abs(rgb[..., 1] - rgb[..., 2])
    ring = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    edges = np.abs(np.diff(gray, axis=0)).mean() + np.abs(np.diff(gray, axis=1)).mean()
    width, height = image.size
    return np.array(
        [
            chroma.mean(),
            ring.mean(),
            (gray < 0.1).mean(),
            edges,
            np.log(width / height),
            gray.std(),
        ],
        dtype=np.float64,
    )


def feature_vectors(embeddings: np.ndarray, statistics: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(embeddings, np.float64), statistics], axis=1)


@dataclass
class OODGuard:
    """A fitted guard: standardisation, the shrunk Gaussian, and the refusal threshold."""

    center: np.ndarray
    scale: np.ndarray
    location: np.ndarray
    precision: np.ndarray
    threshold: float
    summary: dict  # how it was fitted and how it measured; saved as JSON beside the arrays

    @classmethod
    def fit(
        cls, train: np.ndarray, validation: np.ndarray, quantile: float = DEFAULT_QUANTILE
    ) -> OODGuard:
        if not 0.5 <= quantile < 1.0:
            raise ValueError(f"the guard's quantile must be in [0.5, 1), got {quantile}")
        if len(train) < 10 or len(validation) < 1:
            raise ValueError(
                f"the guard needs at least 10 training and 1 validation image "
                f"(got {len(train)} and {len(validation)})"
            )
        center = train.mean(axis=0)
        scale = np.where(train.std(axis=0) > 1e-6, train.std(axis=0), 1.0)
        gaussian = LedoitWolf().fit((train - center) / scale)
        guard = cls(center, scale, gaussian.location_, gaussian.precision_, 0.0, {})
        guard.threshold = float(np.quantile(guard.score(validation), quantile))
        guard.summary = {
            "n_train": len(train),
            "n_validation": len(validation),
            "quantile": quantile,
            "threshold": guard.threshold,
            "n_features": int(train.shape[1]),
            "statistics": list(STATISTICS),
        }
        return guard

    def score(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance to the training features: larger is less like the slices."""
        centred = (np.atleast_2d(features) - self.center) / self.scale - self.location
        return np.sqrt(np.einsum("ij,jk,ik->i", centred, self.precision, centred).clip(0.0))

    def in_distribution(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) <= self.threshold

    def save(self, folder: Path) -> Path:
        folder = Path(folder)
        np.savez(
            folder / GUARD_ARRAYS,
            center=self.center,
            scale=self.scale,
            location=self.location,
            precision=self.precision,
        )
        return write_json(folder / GUARD_JSON, {**self.summary, "threshold": self.threshold})

    @classmethod
    def load(cls, folder: Path) -> OODGuard:
        folder = Path(folder)
        summary = json.loads((folder / GUARD_JSON).read_text())
        with np.load(folder / GUARD_ARRAYS) as arrays:
            return cls(
                arrays["center"],
                arrays["scale"],
                arrays["location"],
                arrays["precision"],
                float(summary["threshold"]),
                summary,
            )


def measure(guard: OODGuard, mri: np.ndarray, others: np.ndarray, kinds: list[str]) -> dict:
    """AUROC (real slices vs other images), false rejections of slices, catches per kind."""
    mri_scores, other_scores = guard.score(mri), guard.score(others)
    labels = np.r_[np.zeros(len(mri_scores)), np.ones(len(other_scores))]
    flagged = ~guard.in_distribution(other_scores)
    per_kind = {
        kind: float(flagged[[k == kind for k in kinds]].mean()) for kind in sorted(set(kinds))
    }
    return {
        "auroc": float(roc_auc_score(labels, np.r_[mri_scores, other_scores])),
        "false_rejection_rate": float((~guard.in_distribution(mri_scores)).mean()),
        "n_mri": len(mri_scores),
        "n_other": len(other_scores),
        "other_flagged_rate": float(flagged.mean()),
        "other_flagged_by_kind": per_kind,
        "mri_scores": mri_scores.tolist(),
        "other_scores": other_scores.tolist(),
    }


def find_guard(model_path: Path, artifacts_dir: Path | None) -> Path | None:
    """The folder of the guard fitted for this model file: beside it (an export or a copied
    bundle), else the newest `ood_guard` artifact that names it."""
    model_path = Path(model_path).resolve()
    if (model_path.parent / GUARD_JSON).exists():
        return model_path.parent
    if artifacts_dir is None or not (Path(artifacts_dir) / "ood_guard").is_dir():
        return None
    matches = [
        record.parent
        for record in Path(artifacts_dir, "ood_guard").glob(f"*/*/{GUARD_JSON}")
        if json.loads(record.read_text()).get("model_path") == str(model_path)
    ]
    return max(matches, key=lambda folder: folder.name, default=None)

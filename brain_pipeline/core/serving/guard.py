"""The out-of-distribution guard: does an input look like the slices the model learned from?

Two views of each image, each scored against the training split:

- the model's own penultimate features (what the classifier sees after preprocessing):
  Mahalanobis distance to their Gaussian (Ledoit-Wolf shrunk covariance, so a few hundred
  images suffice). It catches noise, X-ray-like renders, photos once grey;
- six statistics of the image as uploaded (colour, border, darkness, edges, aspect, spread),
  which preprocessing would erase: distance to the 5th nearest training image (standardised).
  It catches blank frames, text pages, colour. One Gaussian over both views did not: a
  blank frame's few extreme statistics drown among 192 ordinary feature dimensions.

Each distance is divided by its own 99th percentile on the validation split; the score is the
larger of the two, and the threshold the validation split's `quantile` of that score, so about
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
from sklearn.neighbors import NearestNeighbors

from brain_pipeline.core import artifact_names
from brain_pipeline.core.artifacts import write_json

STATISTICS = ("chroma", "border_level", "dark_fraction", "edge_energy", "log_aspect", "spread")
DEFAULT_QUANTILE = 0.99
VIEW_QUANTILE = 0.99  # each view's distance is divided by this quantile on validation
NEIGHBOURS = 5


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


class _Gaussian:
    """Mahalanobis distance to standardised training vectors (shrunk covariance)."""

    def __init__(self, center, scale, location, precision) -> None:
        self.center, self.scale, self.location, self.precision = center, scale, location, precision

    @classmethod
    def fit(cls, train: np.ndarray) -> _Gaussian:
        center, scale = _standardisation(train)
        fitted = LedoitWolf().fit((train - center) / scale)
        return cls(center, scale, fitted.location_, fitted.precision_)

    def distance(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.center) / self.scale - self.location
        return np.sqrt(np.einsum("ij,jk,ik->i", z, self.precision, z).clip(0.0))

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "center": self.center,
            "scale": self.scale,
            "location": self.location,
            "precision": self.precision,
        }


class _Neighbours:
    """Distance to the k-th nearest standardised training vector."""

    def __init__(self, center, scale, reference, k: int = NEIGHBOURS) -> None:
        self.center, self.scale, self.reference, self.k = center, scale, reference, k
        self._index = NearestNeighbors(n_neighbors=min(k, len(reference))).fit(reference)

    @classmethod
    def fit(cls, train: np.ndarray) -> _Neighbours:
        center, scale = _standardisation(train)
        return cls(center, scale, (train - center) / scale)

    def distance(self, x: np.ndarray) -> np.ndarray:
        return self._index.kneighbors((x - self.center) / self.scale)[0][:, -1]

    def arrays(self) -> dict[str, np.ndarray]:
        return {"center": self.center, "scale": self.scale, "reference": self.reference}


def _standardisation(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    spread = train.std(axis=0)
    return train.mean(axis=0), np.where(spread > 1e-6, spread, 1.0)


@dataclass
class OODGuard:
    """A fitted guard: the two views, each one's scale, and the refusal threshold."""

    features: _Gaussian
    statistics: _Neighbours
    scales: tuple[float, float]  # each view's 99th percentile on the validation split
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
        split = train.shape[1] - len(STATISTICS)
        features, statistics = _Gaussian.fit(train[:, :split]), _Neighbours.fit(train[:, split:])
        scales = (
            float(np.quantile(features.distance(validation[:, :split]), VIEW_QUANTILE)),
            float(np.quantile(statistics.distance(validation[:, split:]), VIEW_QUANTILE)),
        )
        guard = cls(features, statistics, scales, 1.0, {})
        guard.threshold = float(np.quantile(guard.score(validation), quantile))
        guard.summary = {
            "n_train": len(train),
            "n_validation": len(validation),
            "quantile": quantile,
            "n_features": int(split),
            "statistics": list(STATISTICS),
            "neighbours": NEIGHBOURS,
            "view_scales": list(scales),
        }
        return guard

    def score(self, vectors: np.ndarray) -> np.ndarray:
        """max(feature distance / its scale, statistics distance / its scale): larger is less
        like the training slices."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
        split = vectors.shape[1] - len(STATISTICS)
        return np.maximum(
            self.features.distance(vectors[:, :split]) / self.scales[0],
            self.statistics.distance(vectors[:, split:]) / self.scales[1],
        )

    def in_distribution(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) <= self.threshold

    def save(self, folder: Path) -> Path:
        folder = Path(folder)
        arrays = {f"features_{k}": v for k, v in self.features.arrays().items()}
        arrays |= {f"statistics_{k}": v for k, v in self.statistics.arrays().items()}
        np.savez(folder / artifact_names.GUARD_ARRAYS, **arrays)
        summary = {**self.summary, "threshold": self.threshold}
        return write_json(folder / artifact_names.GUARD, summary)

    @classmethod
    def load(cls, folder: Path) -> OODGuard:
        folder = Path(folder)
        summary = json.loads((folder / artifact_names.GUARD).read_text())
        with np.load(folder / artifact_names.GUARD_ARRAYS) as a:
            features = _Gaussian(
                *(a[f"features_{k}"] for k in ("center", "scale", "location", "precision"))
            )
            statistics = _Neighbours(
                *(a[f"statistics_{k}"] for k in ("center", "scale", "reference")),
                k=summary["neighbours"],
            )
        scales = tuple(summary["view_scales"])
        return cls(features, statistics, scales, float(summary["threshold"]), summary)


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
    if (model_path.parent / artifact_names.GUARD).exists():
        return model_path.parent
    if artifacts_dir is None or not (Path(artifacts_dir) / "ood_guard").is_dir():
        return None
    matches = [
        record.parent
        for record in Path(artifacts_dir, "ood_guard").glob(f"*/*/{artifact_names.GUARD}")
        if json.loads(record.read_text()).get("model_path") == str(model_path)
    ]
    return max(matches, key=lambda folder: folder.name, default=None)

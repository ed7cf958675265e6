"""Which model answers: a fixed file, or whichever version the promotion history names
champion (re-read on demand, so a promotion reaches a running service)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from brain_pipeline.core import artifact_names
from brain_pipeline.core.artifact_names import CHECKSUMS
from brain_pipeline.core.lineage import provenance_chain
from brain_pipeline.core.model import integrity
from brain_pipeline.core.model.leaderboard import model_version_of
from brain_pipeline.core.model.promotion import PromotionHistory
from brain_pipeline.core.serving.guard import find_guard
from brain_pipeline.core.serving.predictor import Predictor


class NoModelError(FileNotFoundError):
    """Nothing to serve: no champion yet, or its file is gone."""


@dataclass(frozen=True)
class ModelChoice:
    path: Path
    version: str
    how: str  # "champion" or "--model"
    files: str = "unverified"  # "intact": every file matches the checksums of training


@dataclass(frozen=True)
class ModelSource:
    artifacts_dir: Path
    model_path: Path | None = None

    def choose(self) -> ModelChoice:
        if self.model_path is not None:
            path = Path(self.model_path)
            if not path.is_file():
                raise NoModelError(f"model file {path} does not exist")
            files = _verified(path, f"model {path}", "pass another --model")
            return ModelChoice(path, version_of_file(path), "--model", files)
        registry = Path(self.artifacts_dir) / artifact_names.MODEL_REGISTRY
        champion = PromotionHistory(registry).champion()
        if champion is None:
            raise NoModelError(
                f"no champion model in {registry}: run `brain-pipeline materialize` (it trains, "
                "evaluates and promotes a model), or pass --model PATH"
            )
        path = Path(champion["model_path"])
        if not path.is_file():
            raise NoModelError(
                f"the champion {champion['serving_version']}'s model file {path} no longer "
                "exists; promote another version (`brain-pipeline models`) or pass --model PATH"
            )
        version = champion["serving_version"]
        files = _verified(
            path,
            f"the champion {version}",
            "promote an intact version (`brain-pipeline models promote VERSION`) or pass "
            "--model PATH",
        )
        return ModelChoice(path, version, "champion", files)

    def load(self, choice: ModelChoice | None = None) -> Predictor:
        choice = choice or self.choose()
        guard = find_guard(choice.path, self.artifacts_dir)
        return Predictor.load(choice.path, choice.version, guard)


def _verified(path: Path, what: str, remedy: str) -> str:
    """The integrity of the model folder's files (see core/model/integrity.py); a damaged
    one is refused, naming each file, rather than loaded."""
    files = integrity.check(path.parent) if (path.parent / CHECKSUMS).exists() else None
    if files is not None and files.status == "damaged":
        raise NoModelError(f"{what}'s files fail verification: {files.describe()}; {remedy}")
    return files.status if files is not None else "unverified"


def version_of_file(path: Path) -> str:
    """`<configuration>@<folder>` for a pipeline-written model, else the file's path."""
    record = Path(path).parent / artifact_names.PROVENANCE
    if record.is_file() and json.loads(record.read_text()).get("asset_key") == "trained_model":
        return model_version_of(Path(path).parent)
    return str(path)


def model_summary(predictor: Predictor, artifacts_dir: Path) -> dict:
    """What `GET /model` says: the version, its preprocessing and guard, the model card's
    headline (when one was written for it) and the root of its lineage."""
    chain = provenance_chain(predictor.model_path)
    roots = [step for step in chain if step["raw_data_versions"]]
    return {
        "model_version": predictor.version,
        "model_path": str(predictor.model_path),
        "input_size": predictor.preprocessing.image_size,
        "preprocessing": vars(predictor.preprocessing),
        "guard": predictor.guard.summary if predictor.guard else None,
        "card": card_summary(predictor.version, artifacts_dir),
        "lineage_root": {
            "raw_data_versions": {k: v for s in roots for k, v in s["raw_data_versions"].items()},
            "steps": [{k: s[k] for k in ("asset_key", "run_id", "folder")} for s in chain],
        },
    }


def card_summary(version: str, artifacts_dir: Path) -> dict | None:
    cards = sorted(Path(artifacts_dir, "model_card").glob("*/model_card.json"), reverse=True)
    for path in cards:
        card = json.loads(path.read_text())
        if card["model_details"]["model_version"] == version:
            return {
                "path": str(path),
                "intended_use": card["intended_use"],
                "metrics": {
                    k: card["metrics"].get(k)
                    for k in ("accuracy", "macro_f1", "expected_calibration_error")
                },
                "limitations": card["limitations"],
            }
    return None

"""Where the raw data and the artifacts live unless the caller says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR_ENV = "BRAIN_PIPELINE_DATA_DIR"
ARTIFACTS_DIR_ENV = "BRAIN_PIPELINE_ARTIFACTS_DIR"


def default_data_dir() -> Path:
    """$BRAIN_PIPELINE_DATA_DIR, else the embedded `data/` folder of the repository."""
    return Path(os.environ.get(DATA_DIR_ENV) or REPO_ROOT / "data").expanduser().resolve()


def default_artifacts_dir() -> Path:
    """$BRAIN_PIPELINE_ARTIFACTS_DIR, else `artifacts/` in the repository."""
    return Path(os.environ.get(ARTIFACTS_DIR_ENV) or REPO_ROOT / "artifacts").expanduser().resolve()

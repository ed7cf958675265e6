"""`brain-pipeline export`: each format, loaded by its own runtime, matches Keras on the
champion's test split; the preprocessing record and the guard travel with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from brain_pipeline.apps.cli import main
from brain_pipeline.core.serving.export import TOLERANCE, read_report
from brain_pipeline_tests.conftest import MaterializedRun

# Each materializes, trains or serves on its own: not in the fast tier.
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("fmt", ["saved_model", "onnx", "tflite"])
def test_each_export_matches_keras_on_the_test_split(
    materialized: MaterializedRun, tmp_path: Path, capsys, fmt: str
) -> None:
    out = tmp_path / fmt
    assert main(["export", "--format", fmt, str(out)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["passed"] is True and printed["max_abs_difference"] <= TOLERANCE
    assert printed["n_images"] == materialized.metadata["model_evaluation"]["n_test_images"].value
    champion = materialized.metadata["champion_model"]["champion_version"].value
    assert printed["model_version"] == champion
    assert read_report(out) == {k: v for k, v in printed.items() if k != "passed"}
    assert {"preprocessing.json", "ood_guard.json", "ood_guard.npz"} <= {
        p.name for p in out.iterdir()
    }
    assert Path(printed["path"]).exists()


def test_an_export_of_a_bare_model_needs_images_to_verify_on(
    materialized: MaterializedRun, tiny_data_dir: Path, tmp_path: Path, capsys
) -> None:
    from brain_pipeline.core.model.architectures import build_model

    model = tmp_path / "bare" / "model.keras"
    model.parent.mkdir()
    build_model("compact_cnn", image_size=48, n_classes=3).save(model)
    args = ["export", "--format", "onnx", "--model", str(model), str(tmp_path / "out")]
    assert main(args) == 2
    assert "pass --images FOLDER" in capsys.readouterr().err
    assert main([*args, "--images", str(tiny_data_dir / "synth_navoneel" / "yes")]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["n_images"] == 12 and printed["passed"] is True

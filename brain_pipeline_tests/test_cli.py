"""The brain-pipeline command line: synth, materialize, predict, explain."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from brain_pipeline.apps.cli import main
from brain_pipeline.core.imaging.preprocessing import Preprocessing
from brain_pipeline.core.model.architectures import build_model
from brain_pipeline_tests.conftest import DATASETS, MaterializedRun


def test_synth_writes_kaggle_layouts(tmp_path: Path, capsys) -> None:
    assert (
        main(["synth", "--out", str(tmp_path), "--images-per-label", "2", "--image-scale", "0.2"])
        == 0
    )
    assert "wrote 16 images" in capsys.readouterr().out
    assert len(list((tmp_path / "synth_navoneel" / "yes").iterdir())) == 2
    # Refuses to mix two runs in one folder, with a clear message and exit status 2.
    assert main(["synth", "--out", str(tmp_path), "--images-per-label", "2"]) == 2
    assert "error" in capsys.readouterr().err


def test_materialize_reports_every_asset(materialized: MaterializedRun) -> None:
    # The session fixture ran it; a persistent instance now holds the history.
    assert (materialized.home / "history").exists()
    printed = materialized.printed
    assert "succeeded in" in printed
    assert "training configuration: stacked_96" in printed  # the sweep's default
    for key in ("image_manifest", "trained_model", "model_evaluation", "champion_model"):
        assert f"  {key}" in printed, key
    n_files = materialized.metadata["image_manifest"]["n_files"].value
    assert "'accuracy':" in printed and f"'n_files': {n_files}" in printed
    assert "'decision': 'promoted'" in printed  # the first model becomes the champion
    assert {p.name for p in materialized.artifacts.iterdir()} >= {
        "balanced_index",
        "dataset_splits",
        "emissions_record",
        "gradcam_gallery",
        "image_manifest",
        "model_evaluation",
        "trained_model",
        "leaderboard",
        "champion_model",
        "model_card",
        "model_registry",
    }


def test_predict_uses_the_champion_and_reports_bad_files(
    materialized: MaterializedRun, tiny_data_dir: Path, tmp_path: Path, capsys
) -> None:
    good = sorted((tiny_data_dir / "synth_navoneel" / "yes").iterdir())[0]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"<html>not an image</html>")
    status = main(["predict", str(good), str(broken), str(tmp_path / "missing.png")])
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert status == 1
    assert lines[0]["path"] == str(good)
    assert lines[0]["predicted_class"] in {"healthy_brain", "tumor_brain", "alzheimer_brain"}
    assert sum(lines[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert lines[0]["in_distribution"] is True
    assert "cannot read as an image" in lines[1]["error"]
    assert lines[2]["error"] == "file not found"
    assert "broken.jpg" in captured.err
    champion = materialized.metadata["champion_model"]["champion_version"].value
    assert champion == materialized.metadata["trained_model"]["model_version"].value
    assert f"brain-pipeline predict: model {champion} (champion)" in captured.err


def test_predict_answers_per_subject_where_names_give_subjects(
    materialized: MaterializedRun, tiny_data_dir: Path, capsys
) -> None:
    slices = sorted((tiny_data_dir / "adni_slices" / "train" / "AD").iterdir())[:5]
    assert main(["predict", *map(str, slices), "--by-subject"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    per_slice, subjects = lines[:5], lines[5:]
    assert [line["path"] for line in per_slice] == list(map(str, slices))
    scans = sorted({path.name.split("_")[0] for path in slices})
    assert [s["subject"] for s in subjects] == scans and sum(s["n_slices"] for s in subjects) == 5
    for subject in subjects:
        assert subject["predicted_class"] in subject["probabilities"]
        assert 0 < subject["slice_agreement"] <= 1
    with pytest.raises(SystemExit, match="--group-pattern: .*no \\(\\?P<subject>"):
        main(["predict", str(slices[0]), "--by-subject", "--group-pattern", "(\\d+)_"])


def test_predict_with_only_unreadable_files_reports_each(
    materialized: MaterializedRun, tmp_path: Path, capsys
) -> None:
    assert main(["predict", str(tmp_path / "a.png"), str(tmp_path / "b.png")]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["error"] for line in lines] == ["file not found", "file not found"]


def test_predict_and_explain_refuse_to_judge_a_non_mri_image(
    materialized: MaterializedRun, tmp_path: Path, capsys
) -> None:
    noise = tmp_path / "noise.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)).save(noise)
    assert main(["predict", str(noise)]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["in_distribution"] is False and answer["ood_score"] > answer["ood_threshold"]
    assert answer["predicted_class"] is None and answer["probabilities"] is None
    assert main(["explain", str(noise), "--out", str(tmp_path / "x.png")]) == 1
    assert "not judged" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_explain_writes_an_overlay(
    materialized: MaterializedRun, tiny_data_dir: Path, tmp_path: Path, capsys
) -> None:
    image = sorted((tiny_data_dir / "synth_navoneel" / "yes").iterdir())[0]
    out = tmp_path / "overlay.png"
    assert main(["explain", str(image), "--out", str(out), "--method", "gradcam++"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["overlay"] == str(out) and 0 < report["probability"] <= 1
    with Image.open(out) as overlay, Image.open(image) as original:
        # Drawn on the image at its own resolution, not on the model's 48-96 px input.
        assert overlay.size[0] >= original.size[0] and report["lesion_mask"] is None
    # A mask beside the image (the kaggle_3m layout) is outlined and reported; one of another
    # size is refused, naming it.
    beside = tmp_path / image.name
    beside.write_bytes(image.read_bytes())
    mirror = tiny_data_dir / "_lesion_masks" / "synth_navoneel" / "yes" / f"{image.stem}.png"
    (tmp_path / f"{image.stem}_mask.png").write_bytes(mirror.read_bytes())
    assert main(["explain", str(beside), "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["lesion_mask"].endswith(f"{image.stem}_mask.png")
    small = tmp_path / "small_mask.png"
    Image.new("L", (10, 10)).save(small)
    assert main(["explain", str(beside), "--out", str(out), "--mask", str(small)]) == 1
    err = capsys.readouterr().err
    assert "small_mask.png" in err and "not this image's mask" in err
    # Every method of the gallery is offered; an unknown one is refused with the choices.
    assert main(["explain", str(image), "--out", str(out), "--method", "occlusion"]) == 0
    assert json.loads(capsys.readouterr().out)["overlay"] == str(out)
    with pytest.raises(SystemExit):
        main(["explain", str(image), "--out", str(out), "--method", "guided"])
    assert "integrated-gradients" in capsys.readouterr().err


def test_a_bare_model_file_is_preprocessed_as_the_project_trains_with_a_warning(
    tiny_data_dir: Path, tmp_path: Path, capsys
) -> None:
    model_path = tmp_path / "weights" / "model.keras"
    model_path.parent.mkdir()
    build_model("compact_cnn", image_size=48, n_classes=3).save(model_path)
    image = sorted((tiny_data_dir / "synth_navoneel" / "yes").iterdir())[0]

    assert main(["predict", str(image), "--model", str(model_path)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["predicted_class"]
    assert f"no preprocessing.json beside {model_path}" in captured.err
    assert Preprocessing.for_model(model_path, 48) == Preprocessing(
        48, skull_strip=True, intensity="equalise"
    )
    # With a record beside the model, the record wins and nothing is said.
    Preprocessing(48, skull_strip=False, intensity="percentile").save(model_path.parent)
    assert Preprocessing.for_model(model_path, 48) == Preprocessing(
        48, skull_strip=False, intensity="percentile"
    )
    main(["predict", str(image), "--model", str(model_path)])
    assert "no preprocessing.json" not in capsys.readouterr().err


def test_predict_without_any_model_explains_what_to_do(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("BRAIN_PIPELINE_ARTIFACTS_DIR", str(tmp_path / "empty_artifacts"))
    assert main(["predict", "x.jpg"]) == 2
    error = capsys.readouterr().err
    assert "no champion model in" in error and "run `brain-pipeline materialize`" in error


def test_lineage_traces_a_gallery_png_back_to_raw_images(
    materialized: MaterializedRun, capsys
) -> None:
    # A gallery that shows images (one class/outcome may be empty after a 1-epoch model).
    galleries = sorted(materialized.path("gradcam_gallery").parent.glob("*.png"))
    explained = pd.read_parquet(galleries[0].parent / "explained_images.parquet")
    shown = explained.iloc[0]
    outcome = "correct" if shown["predicted_class"] == shown["target_class"] else "misclassified"
    gallery = galleries[0].parent / f"{shown['target_class']}_{outcome}.png"
    assert main(["lineage", str(gallery), "--json"]) == 0
    tree = json.loads(capsys.readouterr().out)

    def chain(node):
        yield node
        for upstream in node["upstream"]:
            yield from chain(upstream)

    keys = [node["asset_key"] for node in chain(tree)]
    assert keys[0] == "gradcam_gallery"
    assert {"trained_model", "dataset_splits", "balanced_index", "image_manifest"} <= set(keys)
    manifest_node = next(node for node in chain(tree) if node["asset_key"] == "image_manifest")
    names = DATASETS
    parts = {node["asset_key"]: node for node in manifest_node["upstream"]}
    assert set(parts) == {f"manifest/{name}" for name in names}
    for name in names:  # each dataset's manifest names the raw data version it was built from
        assert set(parts[f"manifest/{name}"]["raw_data_versions"]) == {f"raw/{name}"}
    # The gallery's images are raw files whose hashes match the bytes on disk.
    import hashlib

    # Each dataset's manifest records the folder it scanned.
    roots = {name: Path(parts[f"manifest/{name}"]["config"]["root"]) for name in names}
    assert tree["images"]["rows"], "the chosen gallery shows images"
    for row in tree["images"]["rows"]:
        assert row["target_class"] == shown["target_class"]
        data = (roots[row["dataset"]] / row["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"]
    assert main(["lineage", str(gallery)]) == 0
    text = capsys.readouterr().out
    assert "<- trained_model" in text and "(data version " in text


def test_an_unknown_configuration_is_refused_before_any_run(capsys) -> None:
    assert main(["materialize", "--configuration", "huge_net"]) == 2
    error = capsys.readouterr().err
    assert "no configuration 'huge_net'" in error and "stacked_96" in error


def test_lineage_of_a_foreign_file_is_a_clear_error(tmp_path: Path, capsys) -> None:
    stray = tmp_path / "stray.png"
    stray.write_bytes(b"x")
    assert main(["lineage", str(stray)]) == 2
    assert "no provenance.json" in capsys.readouterr().err


@pytest.mark.slow
def test_a_failing_step_prints_the_error_and_exits_1(tmp_path: Path) -> None:
    # One dataset whose only file is not an image: the manifest rejects it, the index fails.
    (tmp_path / "raw" / "mydata" / "yes").mkdir(parents=True)
    (tmp_path / "raw" / "mydata" / "yes" / "a.jpg").write_text("not an image")
    environment = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "home"),
        "BRAIN_PIPELINE_DATA_DIR": str(tmp_path / "raw"),
        "BRAIN_PIPELINE_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
    }
    # A real process: what the terminal gets, file descriptors included.
    done = subprocess.run(
        [sys.executable, "-m", "brain_pipeline.apps.cli", "materialize"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert "balanced_index           FAILED: ValueError: no usable images" in done.stdout
    assert "image_manifest           done in" in done.stdout
    assert "FAILED after" in done.stderr
    # No TensorFlow start-up chatter, no Dagster beta warnings.
    assert "cuda" not in done.stderr.lower() and "BetaWarning" not in done.stderr
    assert (tmp_path / "home" / "dagster.yaml").exists()

"""External datasets: an external phantom set in another style, with copies of training
images in it, is never trained on; its copies are left out and counted; the rest is scored
on the questions its labels can answer, with intervals; the card and leaderboard show it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from brain_pipeline.core.data.lesions import lesion_mask_path
from brain_pipeline.core.data.mask_conventions import MIRROR_FOLDER
from brain_pipeline.core.data.sources import DatasetConfigError, load_raw_data_config
from brain_pipeline.synthetic.phantoms import synthesize_datasets
from brain_pipeline_tests.conftest import materialize_in

# Each materializes, trains or serves on its own: not in the fast tier.
pytestmark = pytest.mark.slow

TUMOUR_FOLDERS = ("glioma", "meningioma", "pituitary")
TOML = """
[datasets.synth_navoneel]
path = "synth_navoneel"
[datasets.synth_preetviradiya]
path = "synth_preetviradiya"
[datasets.synth_alzheimer]
path = "synth_alzheimer"
[datasets.external_4class]
path = "external_4class"
role = "external"
"""


def _external_set(root: Path, other_style: Path) -> dict[str, int]:
    """A 4-class tumour layout of phantoms made with another seed, size and difficulty, plus
    two byte-identical copies and one resized copy of training images."""
    synthesize_datasets(other_style, seed=11, images_per_label=9, image_scale=0.45, difficulty=0.2)
    layout = other_style / "synth_preetviradiya" / "Brain Tumor Data Set" / "Brain Tumor Data Set"
    target = root / "external_4class"
    masks = other_style / MIRROR_FOLDER / "synth_preetviradiya"
    for position, image in enumerate(sorted((layout / "Brain Tumor").iterdir())):
        folder = target / TUMOUR_FOLDERS[position % 3]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(image, folder / image.name)
        # Its lesion mask beside it, as the kaggle_3m layout keeps them.
        mask = lesion_mask_path(masks.parent, masks.name, str(image.relative_to(layout.parents[1])))
        shutil.copy2(mask, folder / f"{image.stem}_mask.png")
    (target / "notumor").mkdir()
    for image in sorted((layout / "Healthy").iterdir()):
        shutil.copy2(image, target / "notumor" / image.name)
    training = sorted((root / "synth_navoneel" / "yes").iterdir())
    shutil.copy2(training[0], target / "glioma" / "copy_a.jpg")
    shutil.copy2(training[1], target / "pituitary" / "copy_b.jpg")
    with Image.open(training[2]) as original:
        smaller = original.resize((original.width * 4 // 5, original.height * 4 // 5))
        smaller.save(target / "meningioma" / "resized_c.png")
    (root / "datasets.toml").write_text(TOML)
    return {"own": 18, "exact": 2, "resized": 1}


@pytest.fixture(scope="module")
def external_run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("raw_external")
    synthesize_datasets(root, seed=3, images_per_label=12, image_scale=0.3)
    counts = _external_set(root, tmp_path_factory.mktemp("other_style"))
    with materialize_in(root, tmp_path_factory.mktemp("external_run")) as run:
        yield run, counts


def test_the_external_set_is_never_trained_on(external_run) -> None:
    run, _ = external_run
    index = pd.read_parquet(run.path("balanced_index"))
    splits = pd.read_parquet(run.path("dataset_splits"))
    assert "external_4class" not in set(index["dataset"]) | set(splits["dataset"])
    manifest = pd.read_parquet(run.path("image_manifest"), columns=["dataset", "status"])
    external = manifest[manifest["dataset"] == "external_4class"]
    assert (external["status"] == "ok").sum() == 21  # ingested all the same
    assert (external["status"] == "skipped").sum() == 9  # the tumours' masks: never images


def test_copies_are_left_out_and_counted_and_the_rest_scored(external_run) -> None:
    run, counts = external_run
    metadata = run.metadata["external_evaluation"]
    assert metadata["n_external_datasets"].value == 1
    result = json.loads(Path(metadata["path"].value).read_text())["datasets"]["external_4class"]
    copies = result["copies_excluded"]
    assert copies["exact_copy"] == counts["exact"]
    assert copies["thumbnail_twin"] + copies["resaved_copy"] == counts["resized"]
    assert result["n_images_in_set"] == 21 and result["n_images"] == counts["own"]
    # A tumour layout: tumour vs not is answerable, 3-class and healthy vs Alzheimer are not.
    assert set(result["questions"]) == {"tumour_vs_not"}
    figure = result["questions"]["tumour_vs_not"]["accuracy"]
    assert 0 <= figure["low"] <= figure["estimate"] <= figure["high"] <= 1
    labels = result["per_folder_label"]
    assert set(labels) == {*TUMOUR_FOLDERS, "notumor"} and labels["notumor"]["n_images"] == 9
    table = pd.read_parquet(Path(metadata["path"].value).parent / "external_4class.parquet")
    assert (
        table["excluded"].sum() == 3
        and table.loc[table["excluded"], "predicted_class"].isna().all()
    )
    assert table.loc[~table["excluded"], "predicted_class"].notna().all()


def test_the_maps_are_scored_against_the_external_sets_lesion_masks(external_run) -> None:
    run, _ = external_run
    metadata = run.metadata["external_evaluation"]
    result = json.loads(Path(metadata["path"].value).read_text())["datasets"]["external_4class"]
    located = result["localisation"]
    assert located["method"] == "gradcam" and 0 < located["n_images"] <= 9
    for figure in ("pointing_game", "pointing_game_chance", "energy_in_lesion", "dice"):
        interval = located[figure]
        assert 0 <= interval["low"] <= interval["estimate"] <= interval["high"] <= 1
    assert located["centre_baseline_pointing_game"]["estimate"] in {
        k / located["n_images"] for k in range(located["n_images"] + 1)
    }
    assert located["deletion_auc"] >= 0 and located["deletion_auc_random"] >= 0


def test_card_and_leaderboard_show_the_external_scores(external_run) -> None:
    run, _ = external_run
    card = json.loads((run.path("model_card").parent / "model_card.json").read_text())
    assert card["external_evaluation"]["external_4class"]["n_images"] == 18
    assert "tumour_vs_not" in run.path("model_card").read_text()
    board = pd.read_parquet(run.path("leaderboard"))
    assert board["external"].str.contains("external_4class: tumour_vs_not").all()


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ('[datasets.a]\npath = "a"\nrole = "holdout"\n', "dataset 'a' has role 'holdout'"),
        ('[datasets.a]\npath = "a"\nrole = "external"\n', "every dataset is external"),
    ],
)
def test_roles_are_checked(tmp_path: Path, tables: str, message: str) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "datasets.toml").write_text(tables)
    with pytest.raises(DatasetConfigError, match=message):
        load_raw_data_config(tmp_path)

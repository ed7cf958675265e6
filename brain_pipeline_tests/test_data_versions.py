"""Retraining only when what a model sees changed: content-based data versions.

The index and the splits report a hash of the rows downstream steps read as their data
version, so an addition that changes none of them ends in cache hits downstream, while a real
change still retrains.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from brain_pipeline.core.artifacts import content_version
from brain_pipeline.core.model.sweep import load_sweep
from brain_pipeline.definitions import FULL_PIPELINE_JOB, build_definitions
from brain_pipeline.defs.resources import CarbonTracker
from brain_pipeline_tests.conftest import FAST_RUN

UP_TO_MODEL = ["image_manifest", "balanced_index", "dataset_splits", "trained_model"]


def test_content_version_ignores_row_order_and_other_columns() -> None:
    frame = pd.DataFrame({"sha256": ["a", "b"], "split": ["train", "test"], "path": ["x", "y"]})
    reordered = frame.iloc[::-1].assign(path=["p", "q"])
    assert content_version(frame, ["sha256", "split"]) == content_version(
        reordered, ["sha256", "split"]
    )
    moved = frame.assign(split=["test", "train"])
    assert content_version(frame, ["sha256", "split"]) != content_version(
        moved, ["sha256", "split"]
    )


def test_content_version_hashes_missing_values_explicitly() -> None:
    """A skipped file has no sha256: the version is defined, None and NaN hash alike, and a
    missing value never hashes like the text "nan", "None" or ""."""
    import numpy as np

    def version(value) -> str:
        frame = pd.DataFrame({"path": ["a.png", "readme.txt"], "sha256": ["f00", value]})
        return content_version(frame, ["path", "sha256"])

    assert version(None) == version(np.nan) == version(pd.NA)
    assert len({version(None), version("nan"), version("None"), version("")}) == 4


@pytest.fixture()
def data_copy(tiny_data_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "raw"
    shutil.copytree(tiny_data_dir, copy, symlinks=True)  # the links stay links
    return copy


@pytest.mark.slow
def test_only_a_change_in_what_the_model_sees_retrains(data_copy: Path, tmp_path: Path) -> None:
    defs = build_definitions(
        data_dir=data_copy, artifacts_dir=tmp_path / "art", carbon=CarbonTracker(enabled=False)
    )
    job = defs.resolve_job_def(FULL_PIPELINE_JOB)
    sources = [  # the raw sources and each dataset's manifest
        k
        for k in defs.resolve_asset_graph().get_all_asset_keys()
        if k.path[0] in ("raw", "manifest")
    ]
    selection = [*sources, *(dg.AssetKey(name) for name in UP_TO_MODEL)]
    with dg.instance_for_test() as instance:

        def run() -> dict[str, dg.AssetMaterialization]:
            result = job.execute_in_process(
                run_config={"ops": {"trained_model": FAST_RUN["ops"]["trained_model"]}},
                instance=instance,
                asset_selection=selection,
                partition_key=load_sweep().default,
            )
            assert result.success
            return {
                name: instance.get_latest_materialization_event(
                    dg.AssetKey(name)
                ).asset_materialization
                for name in UP_TO_MODEL
            }

        def hits(events) -> dict[str, bool]:
            return {name: event.metadata["cache_hit"].value for name, event in events.items()}

        first = run()
        folder = data_copy / "synth_navoneel" / "yes"
        original = sorted(folder.iterdir())[0]
        # An exact copy under a name that sorts last: the index still reads the original.
        shutil.copy(original, folder / "zz_copy_of_a_scan.jpg")
        copied = run()
        assert hits(copied) == {
            "image_manifest": False,  # a new file
            "balanced_index": False,  # recomputed from the new manifest ...
            "dataset_splits": True,  # ... to the same rows, so nothing downstream changed
            "trained_model": True,
        }
        version = "dagster/data_version"
        assert copied["balanced_index"].tags[version] == first["balanced_index"].tags[version]
        # The thumbnail neighbour index was built once, then updated, not rebuilt.
        assert neighbour_update(first)["mode"] == "built"
        assert neighbour_update(copied) == {
            "mode": "incremental",
            "added": 0,
            "removed": 0,
            "new_pairs": 0,
        }
        assert copied["dataset_splits"].tags[version] == first["dataset_splits"].tags[version]

        # A real change: an image of the index disappears, so the model is trained again.
        index = pd.read_parquet(copied["balanced_index"].metadata["path"].value)
        kept = index[(index["dataset"] == "synth_preetviradiya") & (index["n_copies"] == 1)]
        (data_copy / "synth_preetviradiya" / kept["path"].iloc[0]).unlink()
        changed = run()
        assert hits(changed) == dict.fromkeys(UP_TO_MODEL, False)
        assert changed["dataset_splits"].tags[version] != first["dataset_splits"].tags[version]
        assert neighbour_update(changed) == {
            "mode": "incremental",
            "added": 0,
            "removed": 1,
            "new_pairs": 0,
        }
        saved = Path(changed["balanced_index"].metadata["path"].value).parent / "neighbours"
        assert (saved / "search.faiss").is_file() and (saved / "pairs.npy").is_file()


def neighbour_update(events: dict[str, dg.AssetMaterialization]) -> dict:
    return events["balanced_index"].metadata["neighbour_index"].value

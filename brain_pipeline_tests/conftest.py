"""Shared fixtures: a tiny generated raw-data root, and the whole graph materialized once.

`materialized` runs `brain-pipeline materialize` once per session on the tiny data, into a
persistent instance and artifacts root; the graph, CLI and lineage tests read that one run
instead of materializing again.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from brain_pipeline.synthetic.phantoms import synthesize_datasets
from brain_pipeline_tests.hostile_files import jpeg, write_hostile_dataset
from brain_pipeline_tests.layouts import write_adni_layout, write_kaggle_3m_layout

# A run that exercises every step in seconds: 48 px, 2 epochs; early stopping watches from
# the first epoch, so restoring the best weights runs too.
FAST_RUN = {
    "ops": {
        "trained_model": {
            "config": {"image_size": 48, "epochs": 2, "batch_size": 16, "warmup_epochs": 0}
        },
        "gradcam_gallery": {"config": {"images_per_gallery": 2}},
    }
}
# The three synthetic Kaggle layouts, two layouts whose names carry subject ids (layouts.py:
# ADNI slices, the LGG kaggle_3m set with its lesion masks), and three downloads as users have
# them: one holding every kind of file the ingestion knows (hostile_files.py), one whose
# folders the class map does not know (wholly unmapped), one with no image at all.
DATASETS = (
    "adni_slices",
    "download_extras",
    "lgg_kaggle_3m",
    "notes_only",
    "synth_alzheimer",
    "synth_navoneel",
    "synth_preetviradiya",
    "unmapped_scans",
)
MANIFEST_PARTS = tuple(f"manifest/{name}" for name in DATASETS)  # one per dataset
ASSETS = (
    "image_manifest",
    "balanced_index",
    "dataset_splits",
    "trained_model",
    "model_evaluation",
    "gradcam_gallery",
    "ood_guard",
    "external_evaluation",
    "emissions_record",
    "leaderboard",
    "champion_model",
    "model_card",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fast tier (`-m fast`): every test that is neither slow nor services: the core's
    unit tests and the one small materialization the session shares."""
    for item in items:
        if not {"slow", "services"} & {mark.name for mark in item.iter_markers()}:
            item.add_marker(pytest.mark.fast)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """Skipped tests, one line per reason (a missing program skips several tests; pytest's
    own summary would list each): what is missing and how to install it."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        terminalreporter.section("skipped tests, by reason")
        for reason, count in reasons.items():
            terminalreporter.write_line(f"SKIPPED {count} test{'s' * (count > 1)}: {reason}")


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three synthetic datasets in Kaggle layouts, 12 images per source label, small images,
    and the other downloads of DATASETS beside them."""
    root = tmp_path_factory.mktemp("raw")
    synthesize_datasets(root, seed=3, images_per_label=12, image_scale=0.3)
    write_adni_layout(root / "adni_slices")
    write_kaggle_3m_layout(root / "lgg_kaggle_3m")
    (root / "synth_navoneel" / "no" / "readme.txt").write_text("hello\n")
    write_hostile_dataset(root / "download_extras", outside=tmp_path_factory.mktemp("outside"))
    (root / "notes_only").mkdir()
    (root / "notes_only" / "readme.txt").write_text("the images are in another archive\n")
    (root / "notes_only" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    sagittal = root / "unmapped_scans" / "sagittal"
    sagittal.mkdir(parents=True)
    for number in range(3):
        (sagittal / f"scan_{number}.jpg").write_bytes(jpeg(number, size=(64, 64)))
    return root


@dataclass(frozen=True)
class MaterializedRun:
    home: Path  # DAGSTER_HOME
    artifacts: Path
    run_id: str
    printed: str  # what `brain-pipeline materialize` printed
    metadata: dict[str, dict]  # asset -> metadata of this run's materialization
    checks: dict[str, bool]  # check name -> passed
    observed: set[str]  # raw sources observed by the run
    raw_config_reads: int  # times datasets.toml was parsed, code location load included

    def path(self, asset: str) -> Path:
        return Path(self.metadata[asset]["path"].value)


@pytest.fixture(scope="session")
def materialized(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The main command on the tiny data; its environment stays set for the session."""
    with materialize_in(tiny_data_dir, tmp_path_factory.mktemp("materialized")) as run:
        yield run


@contextlib.contextmanager
def materialize_in(data_dir: Path, root: Path):
    """`brain-pipeline materialize` (FAST_RUN) on `data_dir` with its instance and artifacts
    under `root`; the environment stays set until the block ends."""
    from brain_pipeline.apps.cli import main

    config = root / "run_config.json"
    config.write_text(json.dumps(FAST_RUN))
    patch = pytest.MonkeyPatch()
    patch.setenv("DAGSTER_HOME", str(root / "dagster"))
    patch.setenv("BRAIN_PIPELINE_DATA_DIR", str(data_dir))
    patch.setenv("BRAIN_PIPELINE_ARTIFACTS_DIR", str(root / "artifacts"))
    try:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed), counted_raw_config_reads() as reads:
            assert main(["materialize", "--config", str(config)]) == 0, printed.getvalue()
        with dg.DagsterInstance.get() as instance:
            run = _read_run(instance, root, printed.getvalue(), len(reads))
        yield run
    finally:
        patch.undo()


@contextlib.contextmanager
def counted_raw_config_reads():
    """Every `load_raw_data_config` call while the block runs, wherever it is imported."""
    from brain_pipeline.core.data import sources

    original, calls = sources.load_raw_data_config, []

    def counted(data_dir):
        calls.append(Path(data_dir))
        return original(data_dir)

    patch = pytest.MonkeyPatch()
    for module in list(sys.modules.values()):
        name = getattr(module, "__name__", "") or ""
        if name.startswith("brain_pipeline") and vars(module).get("load_raw_data_config"):
            patch.setattr(module, "load_raw_data_config", counted)
    try:
        yield calls
    finally:
        patch.undo()


def _read_run(
    instance: dg.DagsterInstance, root: Path, printed: str, raw_config_reads: int
) -> MaterializedRun:
    (run,) = instance.get_runs(limit=1)
    events = [entry.dagster_event for entry in instance.all_logs(run.run_id)]
    events = [event for event in events if event is not None]
    metadata = {
        event.asset_key.to_user_string(): event.event_specific_data.materialization.metadata
        for event in events
        if event.event_type_value == "ASSET_MATERIALIZATION"
    }
    checks = {
        event.event_specific_data.check_name: event.event_specific_data.passed
        for event in events
        if event.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    observed = {
        event.asset_key.to_user_string()
        for event in events
        if event.event_type_value == "ASSET_OBSERVATION"
    }
    return MaterializedRun(
        home=root / "dagster",
        artifacts=root / "artifacts",
        run_id=run.run_id,
        printed=printed,
        metadata=metadata,
        checks=checks,
        observed=observed,
        raw_config_reads=raw_config_reads,
    )

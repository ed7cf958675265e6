"""Concurrent runs do not overwrite each other; a killed writer leaves nothing partial."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from brain_pipeline.core.artifacts import atomic_path, write_bytes

# Each materializes, trains or serves on its own: not in the fast tier.
pytestmark = pytest.mark.slow


def test_a_writer_killed_mid_write_leaves_no_file(tmp_path: Path) -> None:
    destination = tmp_path / "model.keras"
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from brain_pipeline.core.artifacts import atomic_path
        with atomic_path(Path({str(destination)!r})) as tmp:
            with open(tmp, "wb") as handle:
                handle.write(b"half of a model")
                handle.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    completed = subprocess.run([sys.executable, "-c", script], check=False)
    assert completed.returncode == -9
    assert not destination.exists()
    # The next writer succeeds and readers only ever see complete files.
    write_bytes(destination, b"a whole model")
    assert destination.read_bytes() == b"a whole model"


def test_an_exception_mid_write_keeps_the_previous_file(tmp_path: Path) -> None:
    destination = tmp_path / "index.parquet"
    write_bytes(destination, b"previous complete version")
    try:
        with atomic_path(destination) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("disk full")
    except RuntimeError:
        pass
    assert destination.read_bytes() == b"previous complete version"
    assert [p.name for p in tmp_path.iterdir()] == ["index.parquet"]


RUN_SCRIPT = """
import sys
import dagster as dg
from brain_pipeline.definitions import build_definitions
from brain_pipeline.defs.resources import CarbonTracker

data_dir, artifacts_dir = sys.argv[1:3]
# reuse_unchanged=False: both runs really compute, neither reuses the other's artifacts.
defs = build_definitions(data_dir=data_dir, artifacts_dir=artifacts_dir,
                         carbon=CarbonTracker(enabled=False), reuse_unchanged=False)
keys = [k for k in defs.resolve_asset_graph().get_all_asset_keys()
        if k.path[0] in ("raw", "manifest")
        or k.to_user_string() in ("image_manifest", "balanced_index")]
# Both processes share one instance (DAGSTER_HOME), as runs launched from the UI do.
with dg.DagsterInstance.get() as instance:
    result = defs.resolve_job_def("full_pipeline").execute_in_process(
        instance=instance, asset_selection=keys)
print(result.run_id if result.success else "FAILED")
"""


def test_two_runs_at_once_write_separate_complete_artifacts(
    tiny_data_dir: Path, tmp_path: Path
) -> None:
    artifacts, home = tmp_path / "artifacts", tmp_path / "dagster_home"
    home.mkdir()
    # Create the instance's databases first, as `dagster dev` would have; two processes racing
    # to create a fresh SQLite schema is not the situation under test.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)
    environment = {**os.environ, "DAGSTER_HOME": str(home)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RUN_SCRIPT, str(tiny_data_dir), str(artifacts)],
            stdout=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for _ in range(2)
    ]
    run_ids = [
        process.communicate(timeout=300)[0].strip().splitlines()[-1] for process in processes
    ]
    assert "FAILED" not in run_ids
    folders = sorted((artifacts / "balanced_index").iterdir())
    assert len(folders) == 2, "each run writes its own folder"
    for folder in folders:
        provenance = json.loads((folder / "provenance.json").read_text())
        assert provenance["run_id"] in run_ids
        assert provenance["run_id"][:8] == folder.name.split("_")[-1]
        # Each run's index was built from its own run's manifest, not the other's.
        (manifest,) = provenance["upstream"]
        assert manifest["run_id"] == provenance["run_id"]
        index = pd.read_parquet(folder / "index.parquet")
        assert index["sha256"].is_unique and len(index) > 0

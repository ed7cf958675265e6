"""The artifacts disk fills up mid-run (docs/deploy.md, "Faults and what survives them"):
the step fails naming the file and the space left, no partial file is left behind as an
artifact, the champion keeps serving, and once space is freed the same run succeeds."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from brain_pipeline.core.serving.source import ModelSource
from brain_pipeline_tests.faults.volumes import fill, small_volume
from brain_pipeline_tests.test_models import UNTRAINED, registry_in

pytestmark = [pytest.mark.slow, pytest.mark.faults]


def _failure_messages(result) -> list[str]:
    return [
        event.step_failure_data.error.to_string()
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.STEP_FAILURE
    ]


def test_a_full_disk_fails_the_step_by_name_and_the_champion_still_serves(
    tiny_data_dir: Path, tmp_path: Path
) -> None:
    with (
        small_volume(tmp_path / "volume", megabytes=64) as volume,
        registry_in(tiny_data_dir, tmp_path, artifacts=volume / "artifacts") as registry,
    ):
        champion = registry.train("compact_64_short", **UNTRAINED)
        filler = fill(volume, leave_bytes=32 * 1024)
        result = registry.run("compact_96", raise_on_error=False, **UNTRAINED)
        assert not result.success
        (message,) = _failure_messages(result)[:1]
        assert "no space left on the device writing" in message and str(volume) in message
        assert "MB free" in message
        # Every write goes through a temporary file (hidden, beside its artifact) that is
        # removed on failure; only the hidden lock files stay.
        hidden = [p for p in registry.artifacts.rglob(".*") if p.is_file()]
        assert [p for p in hidden if p.suffix != ".lock"] == []
        # The champion serves as before.
        choice = ModelSource(registry.artifacts).choose()
        assert choice.version == champion["champion_version"] and choice.files == "intact"
        ModelSource(registry.artifacts).load(choice)
        # Space freed: the same run goes through.
        filler.unlink()
        assert registry.run("compact_96", **UNTRAINED).success

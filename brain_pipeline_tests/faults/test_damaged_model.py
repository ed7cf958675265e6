"""A champion whose files are damaged or deleted on the shared mount (docs/deploy.md,
"Faults and what survives them"): a running service keeps answering with the model it has
loaded and says so in /health; a fresh one, `predict`, and a promotion refuse the files,
naming them; restoring the files heals the service without a restart."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from brain_pipeline.apps.api import ServeSettings, create_app
from brain_pipeline.apps.cli import main
from brain_pipeline.core import artifact_names
from brain_pipeline.core.model import integrity
from brain_pipeline.core.serving.source import ModelSource, NoModelError
from brain_pipeline_tests.test_models import UNTRAINED, registry_in

pytestmark = [pytest.mark.slow, pytest.mark.faults]


@pytest.fixture(scope="module")
def champion(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One untrained model (1 epoch) made champion in an instance of its own."""
    with registry_in(tiny_data_dir, tmp_path_factory.mktemp("damaged")) as registry:
        decision = registry.train("compact_64_short", **UNTRAINED)
        assert decision["decision"] == "promoted"
        yield registry, Path(decision["model_path"])


def _wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the service did not notice in time"
        time.sleep(0.1)


def test_training_records_the_checksums_serving_verifies(champion) -> None:
    registry, model_path = champion
    record = model_path.parent / artifact_names.CHECKSUMS
    assert record.is_file() and integrity.check(model_path.parent).status == "intact"
    assert ModelSource(registry.artifacts).choose().files == "intact"


def test_a_damaged_champion_keeps_serving_what_is_loaded_and_is_refused_fresh(
    champion, tiny_data_dir: Path, capsys
) -> None:
    registry, model_path = champion
    image = sorted((tiny_data_dir / "synth_navoneel" / "yes").iterdir())[0]
    upload = {"files": (image.name, image.read_bytes(), "image/jpeg")}
    intact = model_path.read_bytes()
    settings = ServeSettings(reload_seconds=0.2)
    with TestClient(create_app(ModelSource(registry.artifacts), settings)) as client:
        before = client.post("/predict", files=upload).json()
        assert client.get("/health").json()["model_files"] == "intact"
        model_path.write_bytes(intact[: len(intact) // 2])  # a write cut short
        _wait_for(lambda: client.get("/health").json()["status"] == "degraded")
        health = client.get("/health").json()
        assert str(model_path) in health["problem"] and "damaged" in health["problem"]
        after = client.post("/predict", files=upload)
        assert after.status_code == 200
        assert after.json()["model_version"] == before["model_version"]
        assert after.json()["results"] == before["results"]
        # A fresh service, `predict`: refused, naming the file and the way out.
        with pytest.raises(NoModelError, match="models promote"):
            ModelSource(registry.artifacts).choose()
        assert main(["predict", str(image)]) == 2
        assert str(model_path) in capsys.readouterr().err
        # Put back: the running service is healthy again, no restart.
        model_path.write_bytes(intact)
        _wait_for(lambda: client.get("/health").json()["status"] == "ok")
        # Deleted: reported the same way.
        moved = model_path.with_suffix(".moved")
        shutil.move(model_path, moved)
        try:
            _wait_for(lambda: "no longer exists" in (client.get("/health").json()["problem"] or ""))
            assert client.post("/predict", files=upload).status_code == 200
        finally:
            shutil.move(moved, model_path)


def test_files_that_fail_verification_are_never_promoted(champion) -> None:
    registry, model_path = champion
    intact = model_path.read_bytes()
    model_path.write_bytes(intact + b"appended by a stray copy")
    try:
        version = registry.history.champion()["serving_version"]
        # Not by hand ...
        assert main(["models", "promote", version]) == 2
        # ... and not by champion_model, even forced.
        decision = registry.train("compact_64_short", champion={"force": True}, **UNTRAINED)
        assert decision["decision"] == "kept"
        assert "fail verification" in decision["reason"] and str(model_path) in decision["reason"]
    finally:
        model_path.write_bytes(intact)

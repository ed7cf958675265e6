"""The HTTP service on the session's materialized champion: answers, refusals, the guard,
explanations, batching, reloading on a promotion, and the real server with SIGHUP."""

from __future__ import annotations

import io
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from brain_pipeline.apps.api import ServeSettings, create_app
from brain_pipeline.core.model.promotion import PromotionHistory, PromotionRecord
from brain_pipeline.core.serving.decoding import UploadLimits
from brain_pipeline.core.serving.source import ModelSource
from brain_pipeline_tests.conftest import DATASETS, MaterializedRun
from brain_pipeline_tests.core.serving.bad_inputs import bad_uploads, encoded, slice_like

CLASSES = {"healthy_brain", "tumor_brain", "alzheimer_brain"}


@pytest.fixture(scope="module")
def client(materialized: MaterializedRun):
    settings = ServeSettings(limits=UploadLimits(max_bytes=2_000_000, max_images=8))
    with TestClient(create_app(ModelSource(materialized.artifacts), settings)) as client:
        yield client


def _slice_files(tiny_data_dir: Path, n: int) -> list[Path]:
    return sorted((tiny_data_dir / "synth_navoneel" / "yes").iterdir())[:n]


def _noise_png(seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    return encoded(Image.fromarray(pixels), "PNG")


def _files(paths: list[Path]) -> list:
    return [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]


def test_predict_answers_each_image_with_the_champion(
    client: TestClient, materialized: MaterializedRun, tiny_data_dir: Path
) -> None:
    paths = _slice_files(tiny_data_dir, 3)
    response = client.post("/predict", files=_files(paths))
    assert response.status_code == 200, response.text
    body = response.json()
    # The champion of the promotion history: a test before this one may have promoted a newer
    # model than the session's first run did.
    champion = PromotionHistory(materialized.artifacts / "model_registry").champion()
    assert body["model_version"] == champion["serving_version"]
    assert [r["filename"] for r in body["results"]] == [p.name for p in paths]
    for result in body["results"]:
        assert result["predicted_class"] in CLASSES
        assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert result["in_distribution"] is True and result["ood_score"] <= result["ood_threshold"]


def test_predict_answers_per_subject_by_a_given_pattern(
    client: TestClient, tiny_data_dir: Path
) -> None:
    slices = sorted((tiny_data_dir / "adni_slices" / "train" / "NC").iterdir())[:4]
    pattern = r"^(?P<subject>\d+)_\d+\.jpeg$"  # uploads carry bare file names
    response = client.post("/predict", files=_files(slices), data={"group_pattern": pattern})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["results"]) == 4
    scans = sorted({path.name.split("_")[0] for path in slices})
    assert [s["subject"] for s in body["subjects"]] == scans
    assert sum(s["n_slices"] for s in body["subjects"]) == 4
    assert "subjects" not in client.post("/predict", files=_files(slices[:1])).json()
    bad = client.post("/predict", files=_files(slices[:1]), data={"group_pattern": "(unclosed"})
    assert bad.status_code == 422 and bad.json()["error"] == "bad_group_pattern"


def test_a_non_mri_image_is_flagged_and_given_no_class(
    client: TestClient, tiny_data_dir: Path
) -> None:
    (slice_path,) = _slice_files(tiny_data_dir, 1)
    files = [("files", ("noise.png", _noise_png(), "image/png")), *_files([slice_path])]
    noise, real = client.post("/predict", files=files).json()["results"]
    assert noise["in_distribution"] is False and noise["ood_score"] > noise["ood_threshold"]
    assert noise["predicted_class"] is None and noise["probabilities"] is None
    assert "not judged" in noise["note"]
    assert real["in_distribution"] is True
    refused = client.post("/explain", files={"file": ("noise.png", _noise_png(), "image/png")})
    assert refused.status_code == 422 and refused.json()["error"] == "out_of_distribution"
    # No Grad-CAM is computed for a refused image; an accepted one gets its map.
    predictor = client.app.state.serving.predictor
    noise_image = Image.open(io.BytesIO(_noise_png()))
    assert predictor.explain(predictor.prepare(noise_image))[1] is None
    _, heatmap = predictor.explain(predictor.prepare(Image.open(slice_path)))
    assert heatmap.shape == (predictor.preprocessing.image_size,) * 2


@pytest.mark.parametrize("case", sorted(bad_uploads()))
def test_every_bad_upload_gets_a_4xx_naming_it_and_the_service_keeps_serving(
    client: TestClient, tiny_data_dir: Path, case: str
) -> None:
    data, content_type, status, code = bad_uploads()[case]
    response = client.post("/predict", files=[("files", (f"{case}.img", data, content_type))])
    assert response.status_code == status, response.text
    assert response.json()["error"] == code and response.json()["filename"] == f"{case}.img"
    assert f"{case}.img" in response.json()["detail"]
    assert client.post("/predict", files=_files(_slice_files(tiny_data_dir, 1))).status_code == 200


def test_request_level_mistakes_are_4xx_json_too(client: TestClient) -> None:
    big = encoded(
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (1600, 1600), np.uint8)), "PNG"
    )
    too_big = client.post("/predict", files=[("files", ("big.png", big, "image/png"))])
    assert too_big.status_code == 413 and too_big.json()["error"] == "upload_too_large"
    no_files = client.post("/predict", json={"image": "x"})
    assert no_files.status_code == 422 and no_files.json()["error"] == "invalid_request"
    many = [("files", (f"{i}.png", encoded(slice_like(), "PNG"), "image/png")) for i in range(9)]
    too_many = client.post("/predict", files=many)
    assert too_many.status_code == 413 and too_many.json()["error"] == "too_many_images"
    declared = client.post(
        "/predict",
        content=b"x",
        headers={"content-length": str(10**9), "content-type": "multipart/form-data; boundary=x"},
    )
    assert declared.status_code == 413 and declared.json()["error"] == "request_too_large"


def test_explain_returns_an_overlay_or_the_map(client: TestClient, tiny_data_dir: Path) -> None:
    (path,) = _slice_files(tiny_data_dir, 1)
    upload = {"file": (path.name, path.read_bytes(), "image/jpeg")}
    overlay = client.post("/explain", files=upload, params={"method": "gradcam++"})
    assert overlay.status_code == 200 and overlay.headers["content-type"] == "image/png"
    assert overlay.headers["x-predicted-class"] in CLASSES
    assert Image.open(io.BytesIO(overlay.content)).size[0] > 100
    as_json = client.post("/explain", files=upload, params={"format": "json"}).json()
    heatmap = np.array(as_json["map"])
    size = client.get("/model").json()["input_size"]
    assert heatmap.shape == (size, size) and heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    assert as_json["predicted_class"] == overlay.headers["x-predicted-class"]
    params = {"format": "json", "method": "integrated-gradients"}
    other = client.post("/explain", files=upload, params=params).json()
    assert other["method"] == "integrated-gradients" and np.array(other["map"]).shape == (size,) * 2
    unknown = client.post("/explain", files=upload, params={"method": "guided"})
    assert unknown.status_code == 422 and "occlusion" in unknown.text
    # The overlay is drawn on the upload at its own size; a lesion mask of another size is
    # refused, naming the mask's file; one of the same size is outlined.
    with Image.open(path) as original:
        width, height = original.size
    assert Image.open(io.BytesIO(overlay.content)).size[0] >= width
    wrong = {"mask": ("m.png", encoded(Image.new("L", (8, 8)), "PNG"), "image/png")}
    refused = client.post("/explain", files=upload | wrong)
    assert refused.status_code == 422 and refused.json()["error"] == "mask_size_mismatch"
    assert refused.json()["filename"] == "m.png" and f"{width}x{height}" in refused.text
    lesion = np.zeros((height, width), np.uint8)
    lesion[height // 3 : height // 2, width // 3 : width // 2] = 255
    right = {"mask": ("m.png", encoded(Image.fromarray(lesion), "PNG"), "image/png")}
    outlined = client.post("/explain", files=upload | right)
    assert outlined.status_code == 200 and outlined.content != overlay.content


def test_health_model_and_openapi(client: TestClient, materialized: MaterializedRun) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["guard"] is True
    model = client.get("/model").json()
    assert model["model_version"] == health["model_version"]
    assert model["card"]["intended_use"]["primary_uses"].startswith("Research and teaching")
    assert model["guard"]["auroc"] > 0.5 and model["guard"]["threshold"] > 0
    roots = model["lineage_root"]["raw_data_versions"]
    assert set(roots) == {f"raw/{name}" for name in DATASETS}
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/predict", "/explain", "/health", "/model"} <= set(paths)


def test_requests_that_arrive_together_share_a_forward_pass(
    client: TestClient, tiny_data_dir: Path
) -> None:
    before = client.get("/health").json()
    files = _files(_slice_files(tiny_data_dir, 1))
    statuses: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: statuses.append(client.post("/predict", files=files).status_code)
        )
        for _ in range(16)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = client.get("/health").json()
    assert statuses == [200] * 16
    assert after["images"] - before["images"] == 16
    assert after["batches"] - before["batches"] < 16
    assert after["largest_batch"] > 1


def _second_model(folder: Path) -> Path:
    """Another model, of another input size, with its preprocessing record."""
    from brain_pipeline.core.imaging.preprocessing import Preprocessing
    from brain_pipeline.core.model.architectures import build_model

    folder.mkdir(parents=True)
    build_model("compact_cnn", image_size=64, n_classes=3).save(folder / "model.keras")
    Preprocessing(64).save(folder)
    return folder / "model.keras"


def _promote(registry: Path, version: str, model_path: Path) -> None:
    PromotionHistory(registry).append(
        PromotionRecord(None, version, "promoted", "test", "manual", model_path=str(model_path))
    )


def test_a_new_champion_is_served_without_dropping_requests(
    materialized: MaterializedRun, tiny_data_dir: Path, tmp_path: Path
) -> None:
    champion = Path(materialized.metadata["trained_model"]["path"].value)
    registry = tmp_path / "artifacts" / "model_registry"
    _promote(registry, "first@a", champion)
    settings = ServeSettings(reload_seconds=0.2)
    files = _files(_slice_files(tiny_data_dir, 2))
    seen: list[tuple[int, str]] = []
    with TestClient(create_app(ModelSource(tmp_path / "artifacts"), settings)) as client:
        stop = threading.Event()

        def keep_asking() -> None:
            while not stop.is_set():
                response = client.post("/predict", files=files)
                seen.append((response.status_code, response.json().get("model_version")))

        asker = threading.Thread(target=keep_asking)
        asker.start()
        time.sleep(1.0)
        _promote(registry, "second@b", _second_model(tmp_path / "second"))
        deadline = time.monotonic() + 60
        while client.get("/health").json()["model_version"] != "second@b":
            assert time.monotonic() < deadline, "the promotion was not picked up"
            time.sleep(0.2)
        time.sleep(1.0)
        stop.set()
        asker.join()
        assert client.get("/model").json()["input_size"] == 64
        assert client.get("/health").json()["reloads"] == 1
    assert {status for status, _ in seen} == {200}
    versions = [version for _, version in seen]
    assert versions[0] == "first@a" and versions[-1] == "second@b"
    assert versions == sorted(versions, key=["first@a", "second@b"].index)


@pytest.mark.slow
def test_the_real_server_reloads_on_sighup_and_stops_cleanly(
    materialized: MaterializedRun, tiny_data_dir: Path, tmp_path: Path
) -> None:
    import signal
    import socket
    import subprocess
    import sys

    import httpx

    model = tmp_path / "copy" / "model.keras"
    model.parent.mkdir()
    source = Path(materialized.metadata["trained_model"]["path"].value)
    shutil.copy2(source, model)
    shutil.copy2(source.with_name("preprocessing.json"), model.parent)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "brain_pipeline.apps.cli", "serve", "--model", str(model)]
    server = subprocess.Popen(
        [*command, "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        health = _wait_for(lambda: httpx.get(f"{base}/health", timeout=2).json(), 120)
        assert health["model_version"] == str(model) and health["guard"] is False
        server.send_signal(signal.SIGHUP)
        _wait_for(lambda: httpx.get(f"{base}/health").json()["reloads"] == 1 or None, 60)
        (path,) = _slice_files(tiny_data_dir, 1)
        answer = httpx.post(f"{base}/predict", files=_files([path])).json()["results"][0]
        assert answer["predicted_class"] in CLASSES and answer["in_distribution"] is None
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=60)[0]
    # uvicorn shuts down gracefully, then re-raises the signal it caught (exit by SIGTERM).
    assert server.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert f"brain-pipeline serve: model {model} (--model)" in output


def _wait_for(probe, seconds: float):
    deadline = time.monotonic() + seconds
    while True:
        try:
            if result := probe():
                return result
        except Exception:
            if time.monotonic() > deadline:
                raise
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-batch", "0"], "--max-batch must be at least 1"),
        (["--batch-wait-ms", "-1"], "--batch-wait-ms must not be negative"),
        (["--max-megapixels", "0"], "upload limit max_pixels must be at least 1"),
    ],
)
def test_serve_refuses_bad_settings_before_starting(
    tmp_path: Path, capsys, flags: list[str], message: str
) -> None:
    from brain_pipeline.apps.cli import main

    model = tmp_path / "model.keras"
    model.write_bytes(b"not loaded: the settings fail first")
    assert main(["serve", "--model", str(model), *flags]) == 2
    assert message in capsys.readouterr().err

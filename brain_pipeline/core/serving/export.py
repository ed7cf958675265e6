"""Portable exports of a trained model, each checked against Keras on real inputs.

`saved_model` (TensorFlow Serving, TF.js), `onnx` (ONNX Runtime, most other runtimes) and
`tflite` (LiteRT on phones and boards). The export folder carries the preprocessing record
and the guard, so whatever loads it can prepare inputs and refuse others as `serve` does.
All three are traced with ``training=False``: Keras' default serving endpoint in this version
keeps batch normalisation in training mode (answers that depend on the batch), which the
verification below caught.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from brain_pipeline.core import artifact_names
from brain_pipeline.core.artifacts import write_json
from brain_pipeline.core.imaging.preprocessing import Preprocessing

FORMATS = {
    "saved_model": "saved_model",
    "onnx": artifact_names.ONNX_MODEL,
    "tflite": artifact_names.TFLITE_MODEL,
}
TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportReport:
    format: str
    path: str
    model_version: str
    n_images: int
    max_abs_difference: float
    tolerance: float
    seconds: float

    @property
    def passed(self) -> bool:
        return self.max_abs_difference <= self.tolerance


def export_model(model, fmt: str, folder: Path) -> Path:
    """Write `model` in `fmt` into `folder` (created); returns the exported file/folder."""
    import tensorflow as tf

    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / FORMATS[fmt]
    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="image")
    if fmt == "saved_model":
        import keras

        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", lambda x: model(x, training=False), input_signature=[spec])
        archive.write_out(str(target), verbose=False)
    elif fmt == "onnx":
        _export_onnx(model, spec, target)
    else:
        model.export(str(target), format="litert", verbose=False)
    return target


def _export_onnx(model, spec, target: Path) -> None:
    import tensorflow as tf
    import tf2onnx

    try:  # tf2onnx 1.17 predates NumPy 2; Keras carries the shim it applies itself
        from keras.src.export.tf2onnx_lib import patch_tf2onnx

        patch_tf2onnx()
    except ImportError:
        pass
    function = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    tf2onnx.convert.from_function(function, input_signature=[spec], output_path=str(target))


def run_export(target: Path, fmt: str, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """Probabilities from the export, loaded by its own runtime (not by Keras)."""
    outputs = []
    run = _runner(target, fmt)
    for start in range(0, len(images), batch):
        outputs.append(run(np.asarray(images[start : start + batch], dtype=np.float32)))
    return np.concatenate(outputs)


def _runner(target: Path, fmt: str):
    if fmt == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(target))
        return lambda x: loaded.serve(x).numpy()
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]
    return _tflite_runner(target)


def _tflite_runner(target: Path):
    import warnings

    import tensorflow as tf

    with warnings.catch_warnings():  # TF points to ai-edge-litert; the bundled one still runs
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(target))
    source, sink = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

    def run(x: np.ndarray) -> np.ndarray:
        interpreter.resize_tensor_input(source["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(source["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(sink["index"]).copy()

    return run


def bundle(folder: Path, model_path: Path, guard_folder: Path | None, report: ExportReport):
    """Copy the preprocessing record and the guard beside the export; write export.json."""
    record = Preprocessing.record_path(model_path)
    if record.exists():
        shutil.copy2(record, folder / artifact_names.PREPROCESSING)
    if guard_folder is not None:
        for name in (artifact_names.GUARD, artifact_names.GUARD_ARRAYS):
            shutil.copy2(Path(guard_folder) / name, folder / name)
    return write_json(folder / artifact_names.EXPORT_RECORD, asdict(report))


def read_report(folder: Path) -> dict:
    return json.loads((Path(folder) / artifact_names.EXPORT_RECORD).read_text())


def test_split_inputs(
    model_path: Path, preprocessing: Preprocessing, data_dir: Path, artifacts_dir: Path
) -> np.ndarray:
    """The model's own test split as model inputs (through the shared tensor cache)."""
    import pandas as pd

    from brain_pipeline.core.data.sources import load_raw_data_config
    from brain_pipeline.core.data.splits import split_rows
    from brain_pipeline.core.lineage import provenance_chain
    from brain_pipeline.core.model.tensors import tensors_for_rows

    folders = [
        Path(step["folder"])
        for step in provenance_chain(model_path)
        if step["asset_key"] == "dataset_splits"
    ]
    if not folders:
        raise FileNotFoundError(
            f"{model_path} has no recorded test split (not written by the pipeline?); "
            "pass --images FOLDER to verify the export on images of your own"
        )
    test = split_rows(pd.read_parquet(folders[0] / artifact_names.SPLITS), "test")
    roots = load_raw_data_config(data_dir).roots
    cache = Path(artifacts_dir) / artifact_names.TENSOR_CACHE
    cache.mkdir(parents=True, exist_ok=True)
    return np.asarray(tensors_for_rows(test, roots, preprocessing, cache)[0], dtype=np.float32)

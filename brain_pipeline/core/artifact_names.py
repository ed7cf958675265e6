"""Every file and shared folder name under the artifacts root, in one place.

Each asset writes into a run folder of its own, `<asset>/[<partition>/]<time>_<run>/`; the
shared folders hold what several assets and runs reuse. Whatever writes or reads an artifact
(an asset, lineage, the model card, the CLI, a benchmark) names it from here, so renaming a
file is one edit. `brain_pipeline_tests/test_layout.py` refuses these names spelt elsewhere.
"""

# In every run folder.
PROVENANCE = "provenance.json"  # who made the folder, from what, with which code and config
EMISSIONS = "emissions.json"  # the energy record of a tracked step

# manifest/<dataset> and image_manifest.
MANIFEST = "manifest.parquet"
MANIFEST_SUMMARY = "summary.json"

# balanced_index.
INDEX = "index.parquet"
NEIGHBOURS_FOLDER = "neighbours"  # the neighbour index, reused by the next build
INDEX_REPORT = "report.json"
SHORTCUT_AUDIT = "shortcut_audit.json"
LABEL_CONFLICTS = "label_conflicts.parquet"
RESAVED_LINKS = "resaved_links.parquet"
NEIGHBOURS = "neighbours.json"

# dataset_splits.
SPLITS = "splits.parquet"
MOVED_IMAGES = "moved_images.json"

# trained_model.
MODEL = "model.keras"
TRAINING = "training.json"
HISTORY = "history.json"
PREPROCESSING = "preprocessing.json"
CHECKSUMS = "checksums.json"  # sha256 of the files serving loads, recorded at training

# model_evaluation, gradcam_gallery, ood_guard, external_evaluation.
METRICS = "metrics.json"
PREDICTIONS = "predictions.parquet"
SCORES = "scores.json"  # gradcam_gallery: trust scores; ood_guard: the score report
EXPLAINED_IMAGES = "explained_images.parquet"
GUARD = "ood_guard.json"  # the guard's summary; its fitted arrays beside it
GUARD_ARRAYS = "ood_guard.npz"
EXTERNAL = "external.json"

# emissions_record, leaderboard, champion_model, model_card.
EMISSIONS_STEPS = "steps.parquet"
EMISSIONS_MODEL_VERSIONS = "model_versions.parquet"
EMISSIONS_HISTORY_TABLE = "emissions_history.parquet"
EFFICIENCY = "efficiency.parquet"
LEADERBOARD = "leaderboard.parquet"
DECISION = "decision.json"
MODEL_CARD = "model_card.md"
MODEL_CARD_JSON = "model_card.json"
PROMOTIONS = "promotions.jsonl"

# `brain-pipeline export`.
EXPORT_RECORD = "export.json"
ONNX_MODEL = "model.onnx"
TFLITE_MODEL = "model.tflite"

# Shared folders under the artifacts root.
TENSOR_CACHE = "tensor_cache"  # preprocessed tensors by image hash and preprocessing
TRAINING_CHECKPOINTS = "training_checkpoints"  # resumable training, by input signature
EMISSIONS_HISTORY = "emissions_history"  # every tracked step and model version, appended
MODEL_REGISTRY = "model_registry"  # the champion decisions (PROMOTIONS) and their lock

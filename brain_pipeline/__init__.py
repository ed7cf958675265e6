"""brain_pipeline: an orchestrated, reproducible brain-MRI classification workflow."""

import os

# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) drowns the pipeline's own logs;
# warnings and errors still show. Set TF_CPP_MIN_LOG_LEVEL yourself to override.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

"""brain_pipeline: an orchestrated, reproducible brain-MRI classification workflow."""

import os

# TensorFlow's C++ start-up chatter (oneDNN notices, CUDA probing, and a "failed call to
# cuInit" error on every machine without a GPU) drowns the pipeline's own logs. Python
# exceptions still propagate. Set TF_CPP_MIN_LOG_LEVEL yourself (0-2) to see it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"

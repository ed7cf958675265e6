"""The names of the explanation methods (`methods.explanation_maps`), importable without
TensorFlow: the command line and the HTTP service list them as their choices."""

from __future__ import annotations

METHODS = ("gradcam", "gradcam++", "gradcam-early", "occlusion", "integrated-gradients")
DEFAULT_METHOD = "gradcam"

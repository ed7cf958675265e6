"""The three classes the model tells apart, named once for the whole project.

Every dataset's folder names map onto these (`core/data/sources.py`); the model's outputs,
reports and metrics are in `TARGET_CLASSES` order.
"""

HEALTHY = "healthy_brain"
TUMOR = "tumor_brain"
ALZHEIMER = "alzheimer_brain"
TARGET_CLASSES: tuple[str, ...] = (HEALTHY, TUMOR, ALZHEIMER)

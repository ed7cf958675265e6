"""Figures for the UI and the artifact folders (matplotlib, no global pyplot state)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def class_distribution(counts: pd.DataFrame, title: str) -> Figure:
    """Grouped bars: one group per row of `counts` (e.g. dataset or stage), one bar per class."""
    figure = Figure(figsize=(7, 3.6))
    axes = figure.add_subplot()
    width = 0.8 / max(len(counts.columns), 1)
    positions = np.arange(len(counts.index))
    for offset, column in enumerate(counts.columns):
        bars = axes.bar(positions + offset * width, counts[column], width, label=str(column))
        axes.bar_label(bars, fontsize=7)
    axes.set_xticks(positions + width * (len(counts.columns) - 1) / 2, counts.index, fontsize=8)
    axes.set_ylabel("images")
    axes.set_title(title)
    axes.legend(fontsize=8)
    return figure


def image_grid(
    images: Sequence[np.ndarray], titles: Sequence[str], *, columns: int = 6, title: str = ""
) -> Figure:
    """A grid of grayscale images (H, W) or (H, W, 1) with a caption each."""
    rows = max(1, int(np.ceil(len(images) / columns)))
    figure = Figure(figsize=(1.8 * columns, 1.95 * rows + 0.4))
    for position in range(rows * columns):
        axes = figure.add_subplot(rows, columns, position + 1)
        axes.axis("off")
        if position < len(images):
            axes.imshow(np.squeeze(images[position]), cmap="gray", vmin=0, vmax=1)
            axes.set_title(titles[position], fontsize=7)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def learning_curves(history: Mapping[str, Sequence[float]], best_epoch: int) -> Figure:
    figure = Figure(figsize=(9, 3.4))
    for position, metric in enumerate(("loss", "accuracy"), start=1):
        axes = figure.add_subplot(1, 2, position)
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(prefix + metric)
            if values:
                epochs = np.arange(1, len(values) + 1)
                axes.plot(epochs, values, style, label=(prefix or "train_") + metric)
        if best_epoch:
            axes.axvline(best_epoch, color="grey", lw=0.8, ls=":", label="weights kept")
        axes.set_xlabel("epoch")
        axes.set_title(metric)
        axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def confusion_matrix_plot(matrix: Sequence[Sequence[int]], class_names: Sequence[str]) -> Figure:
    matrix = np.asarray(matrix)
    figure = Figure(figsize=(4.8, 4.2))
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046)
    for (row, col), value in np.ndenumerate(matrix):
        colour = "white" if value > matrix.max() / 2 else "black"
        axes.text(col, row, str(value), ha="center", va="center", color=colour)
    ticks = np.arange(len(class_names))
    axes.set_xticks(ticks, class_names, rotation=30, ha="right", fontsize=8)
    axes.set_yticks(ticks, class_names, fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("Confusion matrix (test split)")
    figure.tight_layout()
    return figure


def roc_curves_plot(
    curves: Mapping[str, Mapping[str, Sequence[float]]], aucs: Mapping[str, float | None]
) -> Figure:
    figure = Figure(figsize=(4.8, 4.2))
    axes = figure.add_subplot()
    for name, points in curves.items():
        axes.plot(points["fpr"], points["tpr"], label=f"{name} (AUC {aucs[name]:.3f})")
    axes.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="chance")
    axes.set_xlabel("false positive rate")
    axes.set_ylabel("true positive rate")
    axes.set_title("One-vs-rest ROC (test split)")
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    return figure


def reliability_diagram(bins: Sequence[Mapping[str, float]], ece: float) -> Figure:
    figure = Figure(figsize=(4.8, 4.2))
    axes = figure.add_subplot()
    centres = [(b["low"] + b["high"]) / 2 for b in bins]
    axes.bar(centres, [b["accuracy"] for b in bins], width=0.09, alpha=0.7, label="accuracy")
    axes.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8, label="perfect calibration")
    axes.set_xlabel("confidence of the predicted class")
    axes.set_ylabel("accuracy")
    axes.set_title(f"Reliability (ECE {ece:.3f})")
    axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def efficiency_plot(table: pd.DataFrame) -> Figure:
    """Test macro-F1 and accuracy against cumulative energy and CO2, one point per version."""
    figure = Figure(figsize=(9, 3.6))
    for position, (column, label) in enumerate(
        (
            ("cumulative_kwh", "cumulative energy (kWh)"),
            ("cumulative_kg_co2", "cumulative kg CO2eq"),
        ),
        start=1,
    ):
        axes = figure.add_subplot(1, 2, position)
        for metric, marker in (("f1_macro", "o-"), ("accuracy", "s--")):
            axes.plot(table[column], table[metric], marker, label=f"test {metric}")
        axes.set_xlabel(label)
        axes.set_ylim(0, 1.02)
        axes.legend(fontsize=8)
        axes.set_title("Quality per model version")
    figure.tight_layout()
    return figure


def image_sizes_plot(manifest: pd.DataFrame) -> Figure:
    """Width x height of every readable file, one colour per dataset, and modes per dataset."""
    figure = Figure(figsize=(10, 3.8))
    sizes = figure.add_subplot(1, 2, 1)
    readable = manifest.dropna(subset=["width", "height"])
    for dataset, rows in readable.groupby("dataset"):
        sizes.scatter(rows["width"], rows["height"], s=6, alpha=0.5, label=str(dataset))
    sizes.set_xlabel("width (px)")
    sizes.set_ylabel("height (px)")
    sizes.set_title("Image sizes (raw files)")
    sizes.legend(fontsize=7, markerscale=2)
    modes = figure.add_subplot(1, 2, 2)
    table = pd.crosstab(readable["dataset"], readable["format"] + " " + readable["mode"])
    table.plot.barh(stacked=True, ax=modes, legend=True)
    modes.set_xlabel("files")
    modes.set_ylabel("")
    modes.set_title("Format and mode per dataset")
    modes.legend(fontsize=7)
    figure.tight_layout()
    return figure

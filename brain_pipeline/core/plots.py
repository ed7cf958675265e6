"""Figures for the UI and the artifact folders (matplotlib, no global pyplot state)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
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


def pareto_plot(board: pd.DataFrame) -> Figure:
    """Test macro-F1 against g CO2eq, one point per model version, the Pareto front joined."""
    figure = Figure(figsize=(7, 4.2))
    axes = figure.add_subplot(1, 1, 1)
    measured = board.dropna(subset=["co2_g"])
    if measured.empty:
        axes.text(0.5, 0.5, "no model version with measured energy", ha="center", va="center")
        return figure
    for configuration, rows in measured.groupby("configuration"):
        axes.scatter(rows["co2_g"], rows["f1_macro"], label=configuration, s=36)
    front = measured[measured["on_pareto_front"]].sort_values("co2_g")
    axes.step(front["co2_g"], front["f1_macro"], where="post", color="black", lw=1, alpha=0.6)
    axes.scatter(
        front["co2_g"],
        front["f1_macro"],
        facecolors="none",
        edgecolors="black",
        s=110,
        label="Pareto front",
    )
    axes.set_xscale("log" if measured["co2_g"].max() > 20 * measured["co2_g"].min() else "linear")
    axes.set_xlabel("g CO2eq (training + evaluation)")
    axes.set_ylabel("test macro-F1")
    axes.set_title("Quality against carbon, per model version")
    axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def image_sizes_plot(manifest: pd.DataFrame) -> Figure:
    """Width x height of every readable file, one colour per dataset, and modes per dataset."""
    figure = Figure(figsize=(10, 3.8))
    sizes, modes = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    sizes.set_title("Image sizes (raw files)")
    modes.set_title("Format and mode per dataset")
    readable = manifest.dropna(subset=["width", "height"])
    if readable.empty:  # every file rejected or skipped: say so instead of failing the asset
        for axes in (sizes, modes):
            axes.text(0.5, 0.5, "no readable image files", ha="center", va="center")
            axes.set_axis_off()
        return figure
    for dataset, rows in readable.groupby("dataset"):
        sizes.scatter(rows["width"], rows["height"], s=6, alpha=0.5, label=str(dataset))
    sizes.set_xlabel("width (px)")
    sizes.set_ylabel("height (px)")
    sizes.legend(fontsize=7, markerscale=2)
    table = pd.crosstab(readable["dataset"], readable["format"] + " " + readable["mode"])
    table.plot.barh(stacked=True, ax=modes, legend=True)
    modes.set_xlabel("files")
    modes.set_ylabel("")
    modes.legend(fontsize=7)
    figure.tight_layout()
    return figure


def overlay(
    image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.45, cmap: str = "inferno"
) -> np.ndarray:
    """Blend a grayscale image in [0, 1] with a colour-mapped heatmap -> RGB uint8 (H, W, 3)."""
    gray = np.clip(np.asarray(image, np.float32).squeeze(), 0.0, 1.0)
    heat = np.clip(np.asarray(heatmap, np.float32).squeeze(), 0.0, 1.0)
    if gray.shape != heat.shape or gray.ndim != 2:
        raise ValueError(
            f"image {np.shape(image)} and heatmap {np.shape(heatmap)} must be the same 2-D size"
        )
    colour = colormaps[cmap](heat)[..., :3]
    blended = (1.0 - alpha) * gray[..., None] + alpha * colour
    return np.round(np.clip(blended, 0.0, 1.0) * 255).astype(np.uint8)


def render_gallery(
    images: np.ndarray,
    heatmaps: np.ndarray,
    titles: list[str],
    *,
    columns: int = 4,
    cmap: str = "inferno",
    suptitle: str = "",
    outlines: Sequence[np.ndarray | None] | None = None,
    tile_inches: float = 2.4,
    colour_label: str = "Grad-CAM relevance",
) -> Figure:
    """Grid of heatmap overlays with titles and one shared colour bar; where `outlines`
    gives an image a lesion mask, its outline is drawn over the overlay. Images may differ
    in size (each tile shows its own at `tile_inches`)."""
    n = len(images)
    outlines = [None] * n if outlines is None else list(outlines)
    if len(heatmaps) != n or len(titles) != n or len(outlines) != n:
        raise ValueError("images, heatmaps, titles and outlines must have the same length")
    if n == 0:
        fig = Figure(figsize=(4, 2))
        FigureCanvasAgg(fig)
        fig.text(0.5, 0.5, "no images", ha="center", va="center", fontsize=14)
        if suptitle:
            fig.suptitle(suptitle)
        return fig
    cols = max(1, min(columns, n))
    rows = math.ceil(n / cols)
    fig = Figure(
        figsize=(tile_inches * cols + 1.0, (tile_inches + 0.2) * rows + (0.4 if suptitle else 0)),
        layout="constrained",
    )
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_axis_off()
    tiles = zip(axes.ravel(), images, heatmaps, titles, outlines, strict=False)
    for ax, image, heatmap, title, outline in tiles:
        ax.imshow(overlay(image, heatmap, cmap=cmap), interpolation="nearest")
        if outline is not None and np.any(outline):
            ax.contour(np.asarray(outline, float), levels=[0.5], colors="cyan", linewidths=1.0)
        # Long "true / pred" titles break at the slash instead of overflowing the tile.
        ax.set_title(title.replace(" / ", "\n") if len(title) > 28 else title, fontsize=8)
        ax.set_axis_off()
    colour_bar = fig.colorbar(
        ScalarMappable(norm=Normalize(0.0, 1.0), cmap=cmap), ax=axes.ravel().tolist(), shrink=0.8
    )
    colour_bar.set_label(colour_label)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def guard_scores_plot(
    mri_scores: Sequence[float], other_scores: Mapping[str, Sequence[float]], threshold: float
) -> Figure:
    """The guard's score of real test slices against each kind of non-MRI image."""
    figure = Figure(figsize=(8, 4.2))
    axes = figure.add_subplot()
    names = ["test MRI", *other_scores]
    values = [list(mri_scores), *(list(v) for v in other_scores.values())]
    axes.boxplot(values, orientation="horizontal", tick_labels=names)
    axes.axvline(threshold, color="crimson", ls="--", lw=1, label=f"threshold {threshold:.1f}")
    axes.set_xscale("log")
    axes.set_xlabel("guard score (distance over its validation scale; right of the line: refused)")
    axes.legend(fontsize=8, loc="lower right")
    axes.set_title("Out-of-distribution guard")
    figure.tight_layout()
    return figure

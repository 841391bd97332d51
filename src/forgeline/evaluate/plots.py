"""Figures for the report, rendered to PNG bytes so the HTML can embed them."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from numpy.typing import NDArray


def _to_png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def confusion_matrix_png(confusion: NDArray[np.int64], labels: list[str]) -> bytes:
    """Row-normalised confusion matrix (each row: where that true class's examples went)."""
    n = len(labels)
    size = min(max(4.0, 0.28 * n + 2), 30.0)
    figure, axes = plt.subplots(figsize=(size, size))
    row_totals = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(
        confusion, row_totals, out=np.zeros(confusion.shape), where=row_totals > 0
    )
    image = axes.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of true class")
    tick_size = 8 if n <= 30 else max(2, 8 - n // 30)
    axes.set_xticks(range(n), labels, rotation=90, fontsize=tick_size)
    axes.set_yticks(range(n), labels, fontsize=tick_size)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if confusion[i, j]:
                    colour = "white" if normalised[i, j] > 0.5 else "black"
                    axes.text(
                        j,
                        i,
                        str(confusion[i, j]),
                        ha="center",
                        va="center",
                        color=colour,
                        fontsize=8,
                    )
    axes.set_title("Confusion matrix")
    return _to_png(figure)


def reliability_png(
    curve: list[tuple[float, float, int]],
    ece: float,
    axis_labels: tuple[str, str] = ("confidence (top probability)", "accuracy"),
) -> bytes:
    """Reliability diagram: observed rate against predicted probability; the diagonal is
    perfect calibration."""
    figure, axes = plt.subplots(figsize=(4.5, 4.5))
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    if curve:
        confidence, accuracy, _ = zip(*curve, strict=True)
        axes.plot(confidence, accuracy, marker="o", label="model")
        for x, y, count in curve:
            axes.annotate(
                str(count), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=6
            )
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.05)
    axes.set_xlabel(axis_labels[0])
    axes.set_ylabel(axis_labels[1])
    axes.set_title(f"Calibration (ECE {ece:.3f})")
    axes.legend(loc="upper left", fontsize=8)
    return _to_png(figure)


def score_distribution_png(
    scores: NDArray[np.float64], events: NDArray[np.int64], names: tuple[str, str]
) -> bytes:
    """Histograms of the score for each class: the further apart, the better the separation."""
    figure, axes = plt.subplots(figsize=(6, 3.5))
    bins = np.linspace(float(np.min(scores)), float(np.max(scores)), 40).tolist()
    for value, name in ((0, names[0]), (1, names[1])):
        axes.hist(scores[events == value], bins=bins, alpha=0.55, density=True, label=name)
    axes.set_xlabel("score (points)")
    axes.set_ylabel("density")
    axes.set_title("Score distribution by class")
    axes.legend()
    return _to_png(figure)


def contribution_summary_png(values: NDArray[np.float64], features: pd.DataFrame) -> bytes:
    """SHAP's summary (beeswarm) plot: each dot a row, position its contribution, colour the
    feature's value."""
    import shap

    # A generator of its own for the dots' jitter: the same report for the same model, and no
    # reliance on (or warning about) NumPy's global random state.
    shap.summary_plot(
        values,
        features,
        show=False,
        max_display=15,
        plot_size=(7, 5),
        rng=np.random.default_rng(0),
    )
    return _to_png(plt.gcf())


def precision_coverage_png(
    coverage: NDArray[np.float64], precision: NDArray[np.float64], chosen: tuple[float, float]
) -> bytes:
    """Precision of the answers given against the share of questions answered, as the
    threshold moves; the chosen threshold is marked."""
    figure, axes = plt.subplots(figsize=(5.5, 4))
    axes.plot(coverage, precision, drawstyle="steps-post")
    axes.scatter([chosen[0]], [chosen[1]], color="C3", zorder=3, label="chosen threshold")
    axes.set_xlabel("coverage (share of questions answered)")
    axes.set_ylabel("precision of the answers given")
    axes.set_xlim(0, 1.02)
    axes.set_ylim(0, 1.02)
    axes.set_title("Answered precision against coverage")
    axes.legend(loc="lower left")
    return _to_png(figure)

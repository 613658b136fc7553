"""The PNGs next to benchmark.json: learning curves, confusion matrices, ROC curves, benchmark chart."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402


def learning_curves(results: Path, names: list[str]) -> None:
    fig, (ax_loss, ax_f1) = plt.subplots(1, 2, figsize=(11, 4))
    for name in names:
        record = results / name / "train.json"
        if not record.is_file():
            continue
        h = json.loads(record.read_text())["history"]
        epochs = [r["epoch"] for r in h]
        line, = ax_loss.plot(epochs, [r["train_loss"] for r in h], "-o", label=f"{name} train")
        ax_loss.plot(epochs, [r["val_loss"] for r in h], "--o", color=line.get_color(), label=f"{name} val")
        ax_f1.plot(epochs, [r["val_f1"] for r in h], "-o", label=name)
    ax_loss.set(title="Loss", xlabel="epoch")
    ax_f1.set(title="Validation F1", xlabel="epoch")
    for ax in (ax_loss, ax_f1):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(results / "learning_curves.png", dpi=100)
    plt.close(fig)


def confusion_matrices(table: dict, results: Path) -> None:
    rows = table["models"]
    fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.2))
    for ax, (name, row) in zip(np.atleast_1d(axes), rows.items()):
        c = row["confusion"]
        m = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
        ax.imshow(m, cmap="Blues")
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, f"{v:,}", ha="center", va="center", color="white" if v > m.max() / 2 else "black")
        ax.set(title=name, xticks=[0, 1], yticks=[0, 1], xticklabels=["REAL", "FAKE"], yticklabels=["REAL", "FAKE"],
               xlabel="predicted", ylabel="true")
    fig.tight_layout()
    fig.savefig(results / "confusion_matrices.png", dpi=100)
    plt.close(fig)


def roc_curves(probs: dict[str, np.ndarray], y: np.ndarray, table: dict, results: Path) -> None:
    fig, (ax, zoom) = plt.subplots(1, 2, figsize=(10, 4.5))
    for name, p in probs.items():
        fpr, tpr, _ = roc_curve(y, p)
        for a in (ax, zoom):
            a.plot(fpr, tpr, label=f"{name} (AUC {table['models'][name]['roc_auc']:.4f})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(title="ROC, test split", xlabel="false positive rate", ylabel="true positive rate")
    zoom.set(title="ROC, top-left corner", xlim=(0, 0.1), ylim=(0.9, 1), xlabel="false positive rate")
    for a in (ax, zoom):
        a.grid(alpha=0.3)
        a.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(results / "roc_curves.png", dpi=100)
    plt.close(fig)


def benchmark_chart(table: dict, results: Path) -> None:
    rows = table["models"]
    names = list(rows)
    fig, (ax, ax_t) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [2, 1]})
    width = 0.25
    x = np.arange(len(names))
    for k, key in enumerate(("precision", "recall", "f1")):
        bars = ax.bar(x + (k - 1) * width, [rows[n][key] for n in names], width, label=key)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, rotation=90, padding=2)
    low = min(min(rows[n][k] for n in names) for k in ("precision", "recall", "f1"))
    ax.set(xticks=x, xticklabels=names, ylim=(max(0.0, low - 0.03), 1.005), title="Test split (FAKE = positive)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    trained = [n for n in names if n != "ensemble" and "train_seconds" in rows[n]]
    bars = ax_t.bar(trained, [rows[n]["train_seconds"] for n in trained], color="tab:grey")
    ax_t.bar_label(bars, fmt="%.0f s", fontsize=8)
    ax_t.set(title="Training time", ylabel="seconds")
    ax_t.tick_params(axis="x", labelrotation=15)
    fig.tight_layout()
    fig.savefig(results / "benchmark.png", dpi=100)
    plt.close(fig)


def all_plots(table: dict, probs: dict[str, np.ndarray], y: np.ndarray, results: Path) -> None:
    learning_curves(results, [n for n in table["models"] if n != "ensemble"])
    confusion_matrices(table, results)
    roc_curves(probs, y, table, results)
    benchmark_chart(table, results)


def image_grid(x: np.ndarray, titles: list[str], title: str, path: Path, columns: int = 14) -> None:
    """uint8 [N, 32, 32, 3] images in a grid, each under its own short title."""
    rows = max(1, -(-len(x) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.9, rows * 1.05 + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, t in zip(axes.flat, x, titles):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(t, fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

"""Classification figures, FAKE = positive class."""
from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def expected_calibration_error(y: np.ndarray, p_fake: np.ndarray, bins: int = 15) -> float:
    """ECE of the predicted class's confidence, equal-width bins."""
    pred = (p_fake >= 0.5).astype(int)
    conf = np.where(pred == 1, p_fake, 1 - p_fake)
    edges = np.linspace(0.5, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            ece += m.mean() * abs((pred[m] == y[m]).mean() - conf[m].mean())
    return float(ece)


def binary_metrics(y: np.ndarray, p_fake: np.ndarray, threshold: float = 0.5) -> dict:
    pred = (p_fake >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    return {
        "accuracy": float(skm.accuracy_score(y, pred)),
        "precision": float(skm.precision_score(y, pred, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, zero_division=0)),
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(y, p_fake)) if len(set(y.tolist())) == 2 else float("nan"),
        "ece": expected_calibration_error(y, p_fake),
        "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
    }

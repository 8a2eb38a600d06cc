"""Exact evaluation metrics on collected predictions (numpy, no thresholds).

Keras' streaming AUC bins predictions; the numbers a user reports come from
here: rank-based ROC AUC (ties averaged), log loss and calibration.
"""
from __future__ import annotations

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney ROC AUC with average ranks for ties."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1) > 0.5
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty_like(s)
    # average rank within runs of equal scores
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], s.size]
    avg = (starts + ends - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.clip(np.asarray(probs, dtype=np.float64).reshape(-1), eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def summary(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """AUC, log loss and calibration (mean prediction / base rate)."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    base = float(y.mean()) if y.size else float("nan")
    return {
        "auc": roc_auc(y, p),
        "logloss": log_loss(y, p),
        "eval_rows": int(y.size),
        "base_rate": base,
        "mean_prediction": float(p.mean()) if p.size else float("nan"),
        "calibration": float(p.mean() / base) if y.size and base > 0 else float("nan"),
    }


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct score threshold."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1) > 0.5
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_run = np.r_[s[1:] != s[:-1], True]  # one point per distinct threshold
    tp, fp = np.cumsum(y)[last_of_run], np.cumsum(~y)[last_of_run]
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]


def calibration_bins(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Mean prediction vs observed rate in ``bins`` equal-count bins of the predictions.

    Equal-count (not equal-width) bins: CTR predictions crowd near 0, where
    fixed-width bins would leave most bins empty.
    """
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    order = np.argsort(p, kind="mergesort")
    return [{"mean_prediction": float(p[i].mean()), "observed_rate": float(y[i].mean()), "count": int(i.size)}
            for i in np.array_split(order, min(bins, max(p.size, 1))) if i.size]

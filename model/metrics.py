"""Exact evaluation metrics on collected predictions (numpy, no thresholds).

Keras' streaming AUC bins predictions; the numbers a user reports come from
here: rank-based ROC AUC (ties averaged), log loss and calibration.

With sample weights (a schema's ``role: weight`` column) every figure is
that of the rows repeated by their weight: the weighted AUC is the weighted
share of (positive, negative) pairs ranked right, a pair weighing the product
of its rows' weights (ties count half); log loss, base rate and mean
prediction are weighted means. ``weights=None`` is the unweighted code, unchanged.
"""
from __future__ import annotations

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mann-Whitney ROC AUC with average ranks for ties (``weights``: ``weighted_roc_auc``)."""
    if weights is not None:
        return weighted_roc_auc(labels, scores, weights)
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


def weighted_roc_auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> float:
    """``sum(w_i * w_j * ([s_i > s_j] + [s_i == s_j] / 2)) / (W_pos * W_neg)`` over positives i, negatives j.

    One sort: per distinct score, its positives' weight times the negatives' weight
    below it (plus half of the negatives' weight at it). NaN when either class weighs 0.
    """
    y = np.asarray(labels, dtype=np.float64).reshape(-1) > 0.5
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    w_pos, w_neg = float(w[y].sum()), float(w[~y].sum())
    if not (w_pos > 0 and w_neg > 0):
        return float("nan")
    distinct, run = np.unique(s, return_inverse=True)
    pos_at = np.bincount(run, weights=np.where(y, w, 0.0), minlength=distinct.size)
    neg_at = np.bincount(run, weights=np.where(y, 0.0, w), minlength=distinct.size)
    neg_below = np.cumsum(neg_at) - neg_at
    return float(np.sum(pos_at * (neg_below + 0.5 * neg_at)) / (w_pos * w_neg))


def log_loss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7, weights: np.ndarray | None = None) -> float:
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.clip(np.asarray(probs, dtype=np.float64).reshape(-1), eps, 1 - eps)
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        return float(-np.sum(w * (y * np.log(p) + (1 - y) * np.log(1 - p))) / w.sum()) if w.sum() > 0 \
            else float("nan")
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def summary(labels: np.ndarray, probs: np.ndarray, weights: np.ndarray | None = None) -> dict[str, float]:
    """AUC, log loss and calibration (mean prediction / base rate); weighted with ``weights`` (then also
    ``weighted: true`` and ``weight_sum``; ``eval_rows`` stays the count of rows)."""
    if weights is not None:
        return _weighted_summary(labels, probs, weights)
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


def _weighted_summary(labels: np.ndarray, probs: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    total = float(w.sum())
    base = float(np.sum(w * y) / total) if total > 0 else float("nan")
    mean_prediction = float(np.sum(w * p) / total) if total > 0 else float("nan")
    return {
        "auc": weighted_roc_auc(y, p, w),
        "logloss": log_loss(y, p, weights=w),
        "eval_rows": int(y.size),
        "base_rate": base,
        "mean_prediction": mean_prediction,
        "calibration": mean_prediction / base if total > 0 and base > 0 else float("nan"),
        "weighted": True,
        "weight_sum": total,
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

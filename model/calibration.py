"""Post-hoc Platt scaling fitted on the validation holdout.

Why: a CTR model's probabilities feed bids and expected-value maths, so their
mean must match the click rate. Early stopping picks the epoch by AUC, which
says nothing about calibration, and dropout/regularisation shift the
scores: measured mean prediction / base rate on adult.test was 0.915 with
DeepFM's defaults. Platt scaling, ``p = sigmoid(a * z + b)`` on the model's
log-odds ``z``, fitted by maximum likelihood on validation rows the model did
not train on, fixes the level and the spread of the scores without changing
their order (``a > 0``), so AUC is untouched. The two numbers live in the
model (``CTRModel.platt``) and so in the exported SavedModel.
"""
from __future__ import annotations

import numpy as np


def fit_platt(log_odds: np.ndarray, labels: np.ndarray, *, iterations: int = 50,
              l2: float = 1e-6) -> tuple[float, float]:
    """(a, b) maximising the log likelihood of ``sigmoid(a * z + b)`` (Newton's method, step halved
    until the loss drops, so it cannot diverge).

    At the optimum ``sum(y - p) = 0`` (mean prediction = base rate on these
    rows) and ``sum((y - p) * z) = 0``. A tiny ``l2`` keeps the Hessian
    invertible on separable data. Returns the identity ``(1, 0)`` when the fit
    would reverse the order of the scores (``a <= 0``) or there is only one class.
    """
    z = np.asarray(log_odds, np.float64).reshape(-1)
    y = np.asarray(labels, np.float64).reshape(-1)
    if z.size == 0 or y.min() == y.max():
        return 1.0, 0.0
    x = np.stack([z, np.ones_like(z)], axis=1)
    w = np.array([1.0, 0.0])
    loss = _neg_log_likelihood(w, x, y, l2)
    for _ in range(iterations):
        p = _sigmoid(x @ w)
        grad = x.T @ (y - p) - l2 * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + l2 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        # Newton's full step can overshoot and diverge (measured: frappe logits
        # gave a = 4e10, saturating every score); halve it until the loss drops
        for _ in range(40):
            candidate_loss = _neg_log_likelihood(w + step, x, y, l2)
            if candidate_loss <= loss:
                break
            step = step / 2
        else:
            break
        w, loss = w + step, candidate_loss
        if np.abs(step).max() < 1e-10:
            break
    return (float(w[0]), float(w[1])) if w[0] > 0 else (1.0, 0.0)


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -t))


def _neg_log_likelihood(w: np.ndarray, x: np.ndarray, y: np.ndarray, l2: float) -> float:
    """Log loss of ``sigmoid(x @ w)`` summed over rows, plus ``l2 / 2 * |w|^2`` (overflow-free)."""
    t = x @ w
    return float(np.sum(np.logaddexp(0.0, t) - y * t) + 0.5 * l2 * w @ w)

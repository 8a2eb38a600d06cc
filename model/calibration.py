"""Post-hoc Platt scaling fitted on the validation holdout.

Why: a CTR model's probabilities feed bids and expected-value maths, so their
mean must match the click rate. Early stopping picks the epoch by AUC, which
says nothing about calibration, and dropout/regularisation shift the
scores away from the click rate. Platt scaling, ``p = sigmoid(a * z + b)`` on the model's
log-odds ``z``, fitted by maximum likelihood on validation rows the model did
not train on, fixes the level and the spread of the scores without changing
their order (``a > 0``), so AUC is untouched. The two numbers live in the
model (``CTRModel.platt``) and so in the exported SavedModel.
"""
from __future__ import annotations

import numpy as np


def fit_platt(log_odds: np.ndarray, labels: np.ndarray, *, iterations: int = 50,
              l2: float = 1e-6, weights: np.ndarray | None = None) -> tuple[float, float]:
    """(a, b) maximising the log likelihood of ``sigmoid(a * z + b)`` (Newton's method, step halved
    until the loss drops, so it cannot diverge).

    At the optimum ``sum(y - p) = 0`` (mean prediction = base rate on these
    rows) and ``sum((y - p) * z) = 0``. A tiny ``l2`` keeps the Hessian
    invertible on separable data. Returns the identity ``(1, 0)`` when the fit
    would reverse the order of the scores (``a <= 0``) or there is only one class.

    ``weights`` (sample weights): the weighted likelihood, each row counting
    its weight (rows of weight 0 drop out); then the weighted mean prediction
    equals the weighted base rate. Without, every row weighs exactly 1.0
    (so the arithmetic, multiplied by 1.0, is that of the unweighted fit).
    """
    z = np.asarray(log_odds, np.float64).reshape(-1)
    y = np.asarray(labels, np.float64).reshape(-1)
    r = np.ones_like(z) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if weights is not None:  # only rows that weigh something tell the classes apart
        z, y, r = z[r > 0], y[r > 0], r[r > 0]
    if z.size == 0 or y.min() == y.max():
        return 1.0, 0.0
    x = np.stack([z, np.ones_like(z)], axis=1)
    w = np.array([1.0, 0.0])
    loss = _neg_log_likelihood(w, x, y, l2, r)
    for _ in range(iterations):
        p = _sigmoid(x @ w)
        grad = x.T @ (r * (y - p)) - l2 * w
        hess = (x * (r * p * (1 - p))[:, None]).T @ x + l2 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        # Newton's full step can overshoot and diverge (it did on frappe's logits,
        # saturating every score); halve it until the loss drops
        for _ in range(40):
            candidate_loss = _neg_log_likelihood(w + step, x, y, l2, r)
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


def _neg_log_likelihood(w: np.ndarray, x: np.ndarray, y: np.ndarray, l2: float, r: np.ndarray) -> float:
    """Log loss of ``sigmoid(x @ w)`` summed over rows (row i counted ``r[i]`` times), plus ``l2 / 2 * |w|^2``
    (overflow-free)."""
    t = x @ w
    return float(np.sum(r * (np.logaddexp(0.0, t) - y * t)) + 0.5 * l2 * w @ w)

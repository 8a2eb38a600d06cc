"""Prediction drift: the distribution of a model's scores, against its own eval scores.

At training time the eval scores' deciles-like edges (``BINS`` equal-count bins)
and counts are stored with the export (``model_info.json`` key
``eval_score_profile``). The score job bins each day's scores into the same
edges, so the PSI of the score distribution is known the day the scores are
made, before any label arrives; ``ctrflow monitor`` reports it beside AUC.
"""
from __future__ import annotations

import numpy as np

from ctrflow.pipeline.drift import psi

BINS = 20


def profile(scores: np.ndarray, bins: int = BINS) -> dict:
    """Equal-count bin edges of ``scores`` (distinct inner edges) and the counts in them."""
    scores = np.asarray(scores, np.float64)
    if not len(scores):
        return {"edges": [], "counts": [0], "rows": 0, "mean": None}
    inner = np.unique(np.quantile(scores, np.arange(1, bins) / bins))
    return {"edges": inner.tolist(), "counts": counts(scores, inner.tolist()), "rows": len(scores),
            "mean": float(scores.mean())}


def counts(scores: np.ndarray, edges: list[float]) -> list[int]:
    """How many scores fall in each bin: bin i holds edges[i-1] <= s < edges[i]."""
    ids = np.searchsorted(np.asarray(edges, np.float64), np.asarray(scores, np.float64), side="right")
    return np.bincount(ids, minlength=len(edges) + 1).astype(int).tolist()


def score_psi(reference: dict, current_counts: list[int]) -> float:
    """PSI between the reference profile's counts and counts in the same bins."""
    return psi(dict(enumerate(reference["counts"])), dict(enumerate(current_counts)))


def prediction_drift(reference: dict | None, scores_counts: list[int], mean: float | None,
                     edges: list[float]) -> dict:
    """The ``prediction`` section of drift.json."""
    out = {"rows": int(sum(scores_counts)), "mean_score": mean, "edges": edges, "counts": scores_counts}
    if reference is not None and reference.get("edges") == edges:
        out.update(psi=score_psi(reference, scores_counts), eval_mean_score=reference.get("mean"),
                   eval_counts=reference["counts"])
    return out

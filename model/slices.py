"""Metrics by segment: AUC (with a DeLong confidence interval), log loss and calibration per value of a column.

One global AUC hides a segment (a country, a device, new users) that got
worse; a ranking team looks at each large one. ``slice_metrics`` groups rows
by the values of each slice column: the ``top`` values by rows get their own
slice, every other value goes to ``OTHER``; a missing value (null, NaN, empty)
is the slice ``MISSING``. A slice with fewer than ``min_rows`` rows, or with
one class only, gets no AUC and says why in ``note``.

The AUC interval is DeLong's (DeLong, DeLong & Clarke-Pearson 1988), computed
with midranks in O(n log n) (Sun & Xu 2014): the AUC's variance is
``var(V10)/m + var(V01)/n`` over the structural components of the m positives
and n negatives; the interval is the normal one, ``AUC +- 1.96 se`` clipped to
[0, 1]. ``paired_auc_delta`` gives the same for the difference of two models'
AUC on the same rows (the promotion gate's per-slice comparison).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ctrflow.model import metrics as mt

OTHER = "(other)"
MISSING = "(missing)"
Z95 = 1.959963984540054  # two-sided 95% normal quantile
METHOD = "DeLong (midrank, Sun & Xu 2014), 95% normal interval clipped to [0, 1]"
DEFAULT_TOP = 20
DEFAULT_MIN_ROWS = 100


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` with ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    sx = x[order]
    starts = np.flatnonzero(np.r_[True, sx[1:] != sx[:-1]])
    ends = np.r_[starts[1:], x.size]
    ranks = np.empty(x.size, np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def _components(labels: np.ndarray, scores: np.ndarray) -> tuple[float, np.ndarray, np.ndarray] | None:
    """(AUC, V10 per positive, V01 per negative), or None with one class only."""
    y = np.asarray(labels, np.float64).reshape(-1) > 0.5
    s = np.asarray(scores, np.float64).reshape(-1)
    pos, neg = s[y], s[~y]
    m, n = pos.size, neg.size
    if m == 0 or n == 0:
        return None
    tz = _midranks(np.r_[pos, neg])
    v10 = (tz[:m] - _midranks(pos)) / n  # share of negatives below each positive (ties count 1/2)
    v01 = 1.0 - (tz[m:] - _midranks(neg)) / m  # share of positives above each negative
    return float(v10.mean()), v10, v01


def delong_auc(labels: np.ndarray, scores: np.ndarray) -> dict[str, float | None]:
    """AUC, its DeLong standard error and 95% interval (None values with one class only)."""
    comp = _components(labels, scores)
    if comp is None:
        return {"auc": None, "auc_se": None, "auc_ci_low": None, "auc_ci_high": None}
    auc, v10, v01 = comp
    var = (v10.var(ddof=1) / v10.size if v10.size > 1 else 0.0) + (v01.var(ddof=1) / v01.size if v01.size > 1 else 0.0)
    se = math.sqrt(max(var, 0.0))
    return {"auc": auc, "auc_se": se, "auc_ci_low": max(0.0, auc - Z95 * se), "auc_ci_high": min(1.0, auc + Z95 * se)}


def paired_auc_delta(labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> dict[str, float | None]:
    """AUC(a) - AUC(b) on the same rows with DeLong's paired standard error (the covariance counts)."""
    ca, cb = _components(labels, scores_a), _components(labels, scores_b)
    if ca is None or cb is None:
        return {"delta": None, "delta_se": None}
    (auc_a, v10a, v01a), (auc_b, v10b, v01b) = ca, cb
    d10, d01 = v10a - v10b, v01a - v01b
    var = (d10.var(ddof=1) / d10.size if d10.size > 1 else 0.0) + (d01.var(ddof=1) / d01.size if d01.size > 1 else 0.0)
    return {"delta": auc_a - auc_b, "delta_se": math.sqrt(max(var, 0.0))}


def slice_keys(values: pd.Series, top: int) -> pd.Series:
    """Each row's slice: its value (as text) if among the ``top`` values by rows, else ``OTHER``; missing ->
    ``MISSING`` (counted as a value). Ties in row count are broken by the value's text, so the grouping is exact."""
    text = values.astype("string").fillna(MISSING)
    text = text.mask(text.str.strip().isin(["", "nan", "NaN", "<NA>"]), MISSING)
    counts = text.value_counts()
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
    kept = {k for k, _ in ranked[:top]}
    return text.where(text.isin(kept), OTHER).astype(object)


def _one_slice(value: str, y: np.ndarray, p: np.ndarray, min_rows: int) -> dict:
    rows, positives = int(y.size), int(y.sum())
    base = positives / rows if rows else float("nan")
    out = {"value": value, "rows": rows, "positives": positives, "positive_rate": base,
           "mean_score": float(p.mean()) if rows else None,
           "calibration": float(p.mean() / base) if rows and base > 0 else None,
           "logloss": mt.log_loss(y, p) if rows else None,
           "auc": None, "auc_se": None, "auc_ci_low": None, "auc_ci_high": None, "note": None}
    if rows < min_rows:
        out["note"] = f"too few rows ({rows} < {min_rows}): no AUC"
    elif positives in (0, rows):
        out["note"] = "one class only: no AUC"
    else:
        out.update(delong_auc(y, p))
    return out


def worst_first(slices: list[dict]) -> list[dict]:
    """Lowest AUC first; slices without an AUC last (largest first)."""
    return sorted(slices, key=lambda s: (s["auc"] is None, s["auc"] if s["auc"] is not None else 0.0, -s["rows"],
                                         s["value"]))


def slice_metrics(frame: pd.DataFrame, columns: list[str], labels: np.ndarray, scores: np.ndarray,
                  top: int = DEFAULT_TOP, min_rows: int = DEFAULT_MIN_ROWS) -> dict:
    """{"method", "top", "min_rows", "columns": {column: {"values", "slices" (worst first), "note"}}}.

    ``frame`` holds the slice columns row-aligned with ``labels`` and ``scores``.
    """
    y = np.asarray(labels, np.float64).reshape(-1)
    p = np.asarray(scores, np.float64).reshape(-1)
    out: dict = {"method": METHOD, "top": top, "min_rows": min_rows, "columns": {}}
    for col in columns:
        keys = slice_keys(frame[col].reset_index(drop=True), top).to_numpy()
        slices = [_one_slice(str(v), y[keys == v], p[keys == v], min_rows) for v in pd.unique(keys)]
        with_auc = sum(s["auc"] is not None for s in slices)
        note = None if with_auc else f"no slice of {col} has {min_rows} rows and both classes: no slice AUC"
        out["columns"][col] = {"values": int(pd.Series(keys).nunique()), "slices": worst_first(slices),
                               "note": note}
    return out


def parse_columns(spec: str | tuple[str, ...] | None) -> list[str]:
    """'a,b' or ('a', 'b,c') -> ['a', 'b', 'c'] (order kept, duplicates dropped)."""
    parts = [spec] if isinstance(spec, str) else list(spec or ())
    names = [n.strip() for part in parts for n in part.split(",") if n.strip()]
    return list(dict.fromkeys(names))

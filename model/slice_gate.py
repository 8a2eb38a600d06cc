"""The promotion gate by segment: ``train --baseline M --slice-by COLS --max-slice-auc-drop D --min-slice-rows N``.

A candidate can gain global AUC while one large segment (a country, a
device) gets worse; the gate refuses it when, on any slice with at least
``min_rows`` rows (and both classes), its AUC is below the baseline's by
more than ``max_drop``. Both models are scored on the same eval rows, so each
slice's difference comes with DeLong's paired standard error
(``model.slices.paired_auc_delta``), reported, not used to decide: the rule
is the plain threshold a user sets.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ctrflow.model import slices as sl

DEFAULT_MIN_ROWS = 1000  # a "large segment": smaller slices' AUC moves by chance more than a typical D


def compare_slices(frame: pd.DataFrame, columns: list[str], labels: np.ndarray, new: np.ndarray, old: np.ndarray,
                   max_drop: float, min_rows: int = DEFAULT_MIN_ROWS, top: int = sl.DEFAULT_TOP) -> dict:
    """{"columns": {col: [slice, ...] worst delta first}, "failed": [the slices that refuse promotion], ...}."""
    y = np.asarray(labels, np.float64).reshape(-1)
    new, old = np.asarray(new, np.float64).reshape(-1), np.asarray(old, np.float64).reshape(-1)
    out: dict = {"max_auc_drop": max_drop, "min_rows": min_rows, "top": top, "method": sl.METHOD,
                 "columns": {}, "failed": []}
    for col in columns:
        keys = sl.slice_keys(frame[col].reset_index(drop=True), top).to_numpy()
        rows = []
        for value in pd.unique(keys):
            m = keys == value
            yy = y[m]
            entry = {"column": col, "value": str(value), "rows": int(m.sum()), "positives": int(yy.sum()),
                     "new_auc": None, "baseline_auc": None, "auc_delta": None, "delta_se": None, "checked": False}
            if m.sum() >= min_rows and 0 < yy.sum() < m.sum():
                d = sl.paired_auc_delta(yy, new[m], old[m])
                entry.update(new_auc=sl.delong_auc(yy, new[m])["auc"], baseline_auc=sl.delong_auc(yy, old[m])["auc"],
                             auc_delta=d["delta"], delta_se=d["delta_se"], checked=True)
                if d["delta"] < -max_drop:
                    out["failed"].append(entry)
            rows.append(entry)
        rows.sort(key=lambda e: (e["auc_delta"] is None, e["auc_delta"] or 0.0, -e["rows"]))
        out["columns"][col] = rows
    out["failed"].sort(key=lambda e: e["auc_delta"])
    out["checked_slices"] = sum(e["checked"] for rows in out["columns"].values() for e in rows)
    return out

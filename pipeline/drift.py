"""Upstream drift: a scoring day's feature profile against the training baseline.

Per feature: population stability index (PSI) of the bucket / vocabulary /
hash-id histogram, out-of-vocabulary rate (vocabulary features), missing rate,
and the share of numeric values outside the training range.

PSI = sum_i (q_i - p_i) * ln(q_i / p_i) over ids, p = training shares, q = the
day's shares, each floored at ``EPSILON`` so empty buckets stay finite. Common
reading: < 0.1 stable, 0.1-0.2 moderate shift, > 0.2 significant shift.
"""
from __future__ import annotations

import math
from typing import Any

from ctrflow.pipeline.layout import FeatureLayout
from ctrflow.pipeline.stats import Profile
from ctrflow.schemas.types import Schema

EPSILON = 1e-4
DEFAULT_PSI_THRESHOLD = 0.2


def psi(baseline: dict[int, int], current: dict[int, int]) -> float:
    """Population stability index between two id histograms."""
    nb, nc = sum(baseline.values()), sum(current.values())
    if nb == 0 or nc == 0:
        return float("nan")
    total = 0.0
    for i in set(baseline) | set(current):
        p = max(baseline.get(i, 0) / nb, EPSILON)
        q = max(current.get(i, 0) / nc, EPSILON)
        total += (q - p) * math.log(q / p)
    return total


def _rate(n: int, d: int) -> float | None:
    return n / d if d else None


def drift_report(schema: Schema, layout: FeatureLayout, baseline: Profile, current: Profile,
                 psi_threshold: float = DEFAULT_PSI_THRESHOLD) -> dict[str, Any]:
    """The drift.json document: per-feature figures and those over threshold."""
    num_ids = {f.name: f.num_ids for f in layout.sparse}
    features: dict[str, Any] = {}
    for c in schema.features:
        entry: dict[str, Any] = {"role": c.role}
        if c.name in current.ids and c.name in baseline.ids:
            entry["psi"] = psi(baseline.ids[c.name], current.ids[c.name])
            entry["histogram_train"] = {str(k): v for k, v in sorted(baseline.ids[c.name].items())}
            entry["histogram_current"] = {str(k): v for k, v in sorted(current.ids[c.name].items())}
        vocab = c.categorical.vocabulary if c.role == "categorical" else None
        if vocab is not None and c.name in current.ids and c.name in num_ids:
            vocab_size = num_ids[c.name] - vocab.num_oov_buckets
            hist = current.ids[c.name]
            oov = sum(n for i, n in hist.items() if i >= vocab_size)
            entry["oov_rate"] = _rate(oov, sum(hist.values()))
            base_hist = baseline.ids.get(c.name, {})
            entry["oov_rate_train"] = _rate(sum(n for i, n in base_hist.items() if i >= vocab_size),
                                            sum(base_hist.values()))
        entry["missing_rate"] = _rate(current.missing.get(c.name, 0), current.rows)
        entry["missing_rate_train"] = _rate(baseline.missing.get(c.name, 0), baseline.rows)
        if c.role == "numeric":
            present = current.rows - current.missing.get(c.name, 0)
            entry["out_of_range_rate"] = _rate(current.out_of_range.get(c.name, 0), present)
            r = baseline.ranges.get(c.name)
            entry["train_range"] = [r.min, r.max] if r else None
        features[c.name] = entry
    over = sorted((name for name, e in features.items()
                   if e.get("psi") is not None and not math.isnan(e["psi"]) and e["psi"] > psi_threshold),
                  key=lambda n: -features[n]["psi"])
    return {
        "rows": current.rows,
        "train_rows": baseline.rows,
        "psi_threshold": psi_threshold,
        "features_over_threshold": over,
        "features": features,
    }

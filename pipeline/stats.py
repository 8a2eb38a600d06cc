"""Feature profiles: the training baseline that scoring compares each day against.

A ``Profile`` holds, per feature, how many rows were missing, the numeric
range, and the histogram of transformed ids (quantile bucket / vocabulary /
hash id). Profiles are built per batch with numpy and merged, so the same code
profiles the training data (preprocess) and a scoring day (score): "why
bucketize" is that these histograms make upstream changes visible.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ctrflow.schemas.types import Schema


@dataclasses.dataclass
class NumericRange:
    min: float = math.inf
    max: float = -math.inf

    def merge(self, other: "NumericRange") -> "NumericRange":
        return NumericRange(min(self.min, other.min), max(self.max, other.max))


@dataclasses.dataclass
class Profile:
    rows: int = 0
    missing: dict[str, int] = dataclasses.field(default_factory=dict)
    ranges: dict[str, NumericRange] = dataclasses.field(default_factory=dict)
    ids: dict[str, dict[int, int]] = dataclasses.field(default_factory=dict)
    # numeric values outside the baseline's range (filled in when scoring)
    out_of_range: dict[str, int] = dataclasses.field(default_factory=dict)

    def merge(self, other: "Profile") -> "Profile":
        out = Profile(rows=self.rows + other.rows)
        out.missing = _add_counts(self.missing, other.missing)
        out.out_of_range = _add_counts(self.out_of_range, other.out_of_range)
        out.ranges = dict(self.ranges)
        for k, r in other.ranges.items():
            out.ranges[k] = out.ranges[k].merge(r) if k in out.ranges else r
        out.ids = {k: dict(v) for k, v in self.ids.items()}
        for k, h in other.ids.items():
            out.ids[k] = _add_counts(out.ids.get(k, {}), h)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "missing": self.missing,
            "out_of_range": self.out_of_range,
            "ranges": {k: [_finite(r.min), _finite(r.max)] for k, r in self.ranges.items()},
            "ids": {k: {str(i): n for i, n in sorted(h.items())} for k, h in self.ids.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Profile":
        return cls(
            rows=int(d["rows"]),
            missing={k: int(v) for k, v in d.get("missing", {}).items()},
            out_of_range={k: int(v) for k, v in d.get("out_of_range", {}).items()},
            ranges={k: NumericRange(_inf(v[0], math.inf), _inf(v[1], -math.inf))
                    for k, v in d.get("ranges", {}).items()},
            ids={k: {int(i): int(n) for i, n in h.items()} for k, h in d.get("ids", {}).items()},
        )


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _inf(x: float | None, default: float) -> float:
    return default if x is None else float(x)


def _add_counts(a: Mapping, b: Mapping) -> dict:
    out = dict(a)
    for k, n in b.items():
        out[k] = out.get(k, 0) + n
    return out


def profile_raw(batch: pa.RecordBatch, schema: Schema,
                baseline_ranges: Mapping[str, NumericRange] | None = None) -> Profile:
    """Missing counts and numeric ranges of a clean batch (see ``pipeline.parsing``).

    With ``baseline_ranges`` it also counts values outside the training range.
    """
    p = Profile(rows=batch.num_rows)
    for c in schema.features:
        col = batch.column(c.name)
        if c.role == "numeric":
            values = col.to_numpy(zero_copy_only=False)
            finite = values[~np.isnan(values)]
            p.missing[c.name] = int(values.size - finite.size)
            if finite.size:
                p.ranges[c.name] = NumericRange(float(finite.min()), float(finite.max()))
            if baseline_ranges is not None and c.name in baseline_ranges:
                r = baseline_ranges[c.name]
                p.out_of_range[c.name] = int(np.count_nonzero((finite < r.min) | (finite > r.max)))
        else:
            p.missing[c.name] = int(pc.sum(pc.equal(col, "")).as_py() or 0)
    return p


def add_id_counts(counts: dict[str, np.ndarray], ids: Mapping[str, np.ndarray]) -> None:
    """Adds each feature's id histogram into ``counts`` (dense ``np.bincount`` arrays).

    One pass per feature and batch, no sort; negative ids (padding) are not
    counted. ``id_histograms`` turns the arrays into a Profile's ``ids``.
    """
    for name, values in ids.items():
        flat = np.asarray(values).reshape(-1)
        if flat.size and flat.min() < 0:
            flat = flat[flat >= 0]
        merge_id_counts(counts, name, np.bincount(flat))


def merge_id_counts(counts: dict[str, np.ndarray], name: str, more: np.ndarray) -> None:
    have = counts.get(name)
    if have is None:
        counts[name] = more.astype(np.int64)
        return
    if len(have) < len(more):
        have = np.pad(have, (0, len(more) - len(have)))
    have[:len(more)] += more
    counts[name] = have


def id_histograms(counts: Mapping[str, np.ndarray]) -> dict[str, dict[int, int]]:
    """Dense count arrays -> {feature: {id: count}} of the ids seen."""
    out = {}
    for name, c in counts.items():
        nz = np.flatnonzero(c)
        out[name] = dict(zip(nz.tolist(), c[nz].tolist()))
    return out


def transformed_ids(batch: pa.RecordBatch, names: list[str]) -> dict[str, np.ndarray]:
    """The id columns of a TFT output batch (list columns) as flat numpy arrays."""
    return {n: batch.column(n).flatten().to_numpy() for n in names if n in batch.schema.names}

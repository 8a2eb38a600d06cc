"""Per-day analysis cache for rolling windows (``preprocess --dates A:B --analysis-cache DIR``).

tf.Transform's ``AnalyzeDatasetWithCache`` caches only its own cacheable
analyzers, not ctrflow's fused vocabulary analyzer, so a 28-day window would
re-read 28 days every day. Here every day's analysis state is stored once::

    DIR/<key>/date=YYYY-MM-DD/vocab_<col>.arrow   (token, count) of the day
    DIR/<key>/date=YYYY-MM-DD/numeric.json        per column: quantile summary, count/sum/sum^2/min/max,
                                                  training range (min/max of the present values)
    DIR/<key>/date=YYYY-MM-DD/_SUCCESS            written last: a day is cached only when complete

``key`` hashes the schema and the ``--train`` patterns, so a changed schema
never reuses stale counts. A run analyzes only the days missing from the
cache (one small Beam job), then merges all days of the window in date order
into an ``AnalysisPrior``: the vocabularies come from the summed counts (the
fused analyzer adds them to its empty live input), bucket boundaries from the
merged weighted quantile summaries (``Summary``; exact for small days), z-score/min-max
from the summed moments, each column's training range (the clip before bucketizing and scaling) from the
days' ranges. The transform pass still covers the whole window.

Values and tokens are the transform's: a numeric value is computed by
``pipeline.transform.numeric_value`` itself (signed log1p, clip), and
``tokens`` is the Arrow twin of ``transform.categorical_tokens`` (rule 5 of
``schemas.raw_rules``), held to the same golden table.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems

from ctrflow.beam_jobs.input.transforms import ReadRows
from ctrflow.pipeline import artifacts as af
from ctrflow.pipeline import transform
from ctrflow.pipeline.prior import AnalysisPrior
from ctrflow.schemas.types import MISSING_TOKEN, Column, Schema

SUMMARY_POINTS = 4096  # a column's day summary: exact below this many values, else this many weighted points


@dataclasses.dataclass
class Summary:
    """A mergeable weighted quantile summary (values, weights), picklable and JSON-able.

    Exact until it holds 2x ``SUMMARY_POINTS`` values; then it keeps
    ``SUMMARY_POINTS`` points at evenly spaced cumulative weights, each with an
    equal share of the weight (rank error about 1 / SUMMARY_POINTS per compaction).
    """

    values: np.ndarray
    weights: np.ndarray

    @classmethod
    def empty(cls) -> Summary:
        return cls(np.zeros(0), np.zeros(0))

    def add(self, values: np.ndarray, weights: np.ndarray | None = None) -> Summary:
        w = np.ones(len(values)) if weights is None else weights
        out = Summary(np.concatenate([self.values, values]), np.concatenate([self.weights, w]))
        return out.compacted() if len(out.values) > 2 * SUMMARY_POINTS else out

    def compacted(self) -> Summary:
        order = np.argsort(self.values, kind="stable")
        v, w = self.values[order], self.weights[order]
        cum, total = np.cumsum(w), w.sum()
        targets = (np.arange(SUMMARY_POINTS) + 0.5) * total / SUMMARY_POINTS
        idx = np.minimum(np.searchsorted(cum, targets, side="left"), len(v) - 1)
        return Summary(v[idx], np.full(SUMMARY_POINTS, total / SUMMARY_POINTS))

    def boundaries(self, num_buckets: int) -> list[float]:
        """The num_buckets - 1 inner quantiles (a value of the data at each cumulative weight i / num_buckets)."""
        if not len(self.values):
            return [0.0] * (num_buckets - 1)
        order = np.argsort(self.values, kind="stable")
        v, cum = self.values[order], np.cumsum(self.weights[order])
        targets = np.arange(1, num_buckets) * cum[-1] / num_buckets
        idx = np.minimum(np.searchsorted(cum, targets, side="left"), len(v) - 1)
        return [float(np.float32(x)) for x in v[idx]]


def cache_root(cache_dir: str, schema_text: str, patterns: list[str]) -> str:
    key = hashlib.sha256((schema_text + "\n" + "\n".join(patterns)).encode()).hexdigest()[:12]
    return os.path.join(cache_dir.rstrip("/"), key)


def day_dir(root: str, date: str) -> str:
    return af.date_partition(root, date)


def is_cached(root: str, date: str) -> bool:
    return FileSystems.exists(os.path.join(day_dir(root, date), af.SUCCESS))


def numeric_value(x: np.ndarray, col: Column) -> np.ndarray:
    """The transform's value of a clean numeric column (float32, NaN stays NaN), by ``transform.numeric_value``.

    Not a numpy copy: numpy's float32 log1p differs from TensorFlow's in the
    last bit for about a third of values, and a boundary computed from one
    would miss the point mass the transform finds in the other.
    """
    x = np.asarray(x, np.float32)
    if not col.numeric.log1p and col.numeric.clip is None:
        return x
    import tensorflow as tf

    return transform.numeric_value(tf.constant(x), col).numpy()


def tokens(arr: pa.Array, col: Column) -> pa.Array:
    """``transform.categorical_tokens`` in Arrow: the column's tokens, flattened for multivalent columns.

    A multivalent row's parts are split on the delimiter, stripped of ASCII
    whitespace only (``pc.ascii_trim_whitespace``, as ``tf.strings.strip``; not
    Python's ``str.strip``, which also removes a no-break space) and kept when
    not empty; a row with none is ``MISSING_TOKEN``. Rows stay in order.
    """
    arr = pc.fill_null(arr.cast(pa.string()), "")
    delimiter = col.categorical.multivalent_delimiter
    if delimiter is None:
        return pc.if_else(pc.equal(arr, ""), MISSING_TOKEN, arr).cast(pa.binary())
    parts = pc.split_pattern(arr, delimiter)
    flat = pc.ascii_trim_whitespace(pc.list_flatten(parts))
    keep = pc.not_equal(flat, "")
    rows = pc.list_parent_indices(parts).to_numpy()
    counts = np.bincount(rows[keep.to_numpy(zero_copy_only=False)], minlength=len(arr))
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]), pa.int32())
    kept = pa.ListArray.from_arrays(offsets, flat.filter(keep))
    filled = pc.if_else(pc.equal(pc.list_value_length(kept), 0), pa.scalar([MISSING_TOKEN], kept.type), kept)
    return pc.list_flatten(filled).cast(pa.binary())


@dataclasses.dataclass
class DayState:
    """One day's analysis accumulators."""

    counts: dict[str, pa.Table]
    sketches: dict[str, Summary]
    moments: dict[str, list[float]]  # count, sum, sum of squares, min, max (float64)
    ranges: dict[str, list[float]]  # min, max of the present values ([inf, -inf]: none yet)


class DayAnalysis(beam.CombineFn):
    """Clean batches of one day -> its ``DayState``."""

    def __init__(self, schema: Schema):
        self.schema = schema
        self.vocab_cols = [c for c in schema.categorical if c.categorical.vocabulary is not None]
        self.bucket_cols = [c for c in schema.numeric if c.numeric.bucketize is not None]
        self.scale_cols = [c for c in schema.numeric if c.numeric.scale != "none"]
        self.range_cols = transform.clipped_columns(schema)

    def create_accumulator(self) -> DayState:
        return DayState({}, {c.name: Summary.empty() for c in self.bucket_cols},
                        {c.name: [0.0, 0.0, 0.0, np.inf, -np.inf] for c in self.scale_cols},
                        {c.name: [np.inf, -np.inf] for c in self.range_cols})

    def add_input(self, acc: DayState, batch: pa.RecordBatch) -> DayState:
        for c in self.vocab_cols:
            table = pa.table({"t": tokens(batch.column(c.name), c)}).group_by("t").aggregate([("t", "count")])
            table = pa.table({"t": table.column("t"), "c": table.column("t_count").cast(pa.int64())})
            acc.counts[c.name] = _sum_counts([acc.counts[c.name], table]) if c.name in acc.counts else table
        # every bucketized or scaled column is a range column: its values are computed once per batch
        values = {c.name: numeric_value(batch.column(c.name).to_numpy(zero_copy_only=False), c)
                  for c in self.range_cols}
        present = {name: x[~np.isnan(x)] for name, x in values.items()}
        for c in self.bucket_cols:
            x = present[c.name]
            if len(x):
                acc.sketches[c.name] = acc.sketches[c.name].add(x.astype(np.float64))
        for c in self.scale_cols:
            x = values[c.name]
            x = np.where(np.isnan(x), np.float32(c.numeric.default), x).astype(np.float64)
            m = acc.moments[c.name]
            if len(x):
                m[0] += len(x)
                m[1] += float(x.sum())
                m[2] += float(np.square(x).sum())
                m[3], m[4] = min(m[3], float(x.min())), max(m[4], float(x.max()))
        for c in self.range_cols:
            x = present[c.name]
            if len(x):
                r = acc.ranges[c.name]
                r[0], r[1] = min(r[0], float(x.min())), max(r[1], float(x.max()))
        return acc

    def merge_accumulators(self, accs) -> DayState:
        accs = list(accs)
        out = accs[0]
        for acc in accs[1:]:
            for name, table in acc.counts.items():
                out.counts[name] = _sum_counts([out.counts[name], table]) if name in out.counts else table
            for name, summary in acc.sketches.items():
                out.sketches[name] = out.sketches[name].add(summary.values, summary.weights)
            for name, m in acc.moments.items():
                o = out.moments[name]
                o[0], o[1], o[2] = o[0] + m[0], o[1] + m[1], o[2] + m[2]
                o[3], o[4] = min(o[3], m[3]), max(o[4], m[4])
            for name, r in acc.ranges.items():
                o = out.ranges[name]
                o[0], o[1] = min(o[0], r[0]), max(o[1], r[1])
        return out

    def extract_output(self, acc: DayState) -> DayState:
        return acc


def _sum_counts(tables: list[pa.Table]) -> pa.Table:
    summed = pa.concat_tables(tables).group_by("t").aggregate([("c", "sum")])
    return pa.table({"t": summed.column("t"), "c": summed.column("c_sum")})


def write_day(state: DayState, directory: str, schema: Schema) -> None:
    """Stores a day's state; ``_SUCCESS`` last, so a crash never leaves a half-cached day."""
    for c in schema.categorical:
        if c.categorical.vocabulary is None:
            continue
        table = state.counts.get(c.name, pa.table({"t": pa.array([], pa.binary()), "c": pa.array([], pa.int64())}))
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        with FileSystems.create(os.path.join(directory, transform.vocab_name(c.name) + af.VOCAB_COUNTS_SUFFIX)) as f:
            f.write(sink.getvalue().to_pybytes())
    doc = {"sketches": {n: [s.values.tolist(), s.weights.tolist()] for n, s in state.sketches.items()},
           "moments": state.moments,
           "ranges": {n: r for n, r in state.ranges.items() if r[0] <= r[1]}}  # JSON has no inf
    with FileSystems.create(os.path.join(directory, af.NUMERIC_SUMMARY)) as f:
        f.write(json.dumps(doc).encode())
    with FileSystems.create(os.path.join(directory, af.SUCCESS)) as f:
        f.write(b"")


def analyze_days(p: beam.Pipeline, schema: Schema, tasks_by_date: dict[str, list], root: str,
                 batch_rows: int) -> None:
    """Wires one analysis branch per uncached day into ``p``."""
    for date, tasks in sorted(tasks_by_date.items()):
        label = f"Analyze_{date}"
        read = p | f"Read{label}" >> ReadRows(schema, tasks, f"analyze/{date}", with_label=True, keys=False,
                                               batch_rows=batch_rows)
        _ = (read.rows
             | f"{label}Combine" >> beam.CombineGlobally(DayAnalysis(schema))
             | f"{label}Write" >> beam.Map(write_day, day_dir(root, date), schema))


def prior_from_cache(root: str, dates: list[str], schema: Schema, refit_numeric: bool = True) -> AnalysisPrior:
    """Merges the cached days of the window, in date order, into the analysis the transform uses.

    ``refit_numeric=False`` (boundaries kept from ``--base``): vocabulary counts
    and training ranges only.
    """
    counts = []
    for c in schema.categorical:
        if c.categorical.vocabulary is not None:
            name = transform.vocab_name(c.name)
            counts.append((name, tuple(os.path.join(day_dir(root, d), name + af.VOCAB_COUNTS_SUFFIX) for d in dates)))
    docs = []
    for d in dates:
        with FileSystems.open(os.path.join(day_dir(root, d), af.NUMERIC_SUMMARY)) as f:
            docs.append(json.loads(f.read()))
    ranges = _merged_ranges(docs)
    if not refit_numeric:
        return AnalysisPrior(prior_counts=tuple(counts), ranges=ranges)
    sketches: dict[str, Summary] = {}
    moments: dict[str, list[float]] = {}
    for doc in docs:
        for name, (values, weights) in doc["sketches"].items():
            sketches[name] = sketches.get(name, Summary.empty()).add(np.array(values), np.array(weights))
        for name, m in doc["moments"].items():
            o = moments.setdefault(name, [0.0, 0.0, 0.0, np.inf, -np.inf])
            o[0], o[1], o[2] = o[0] + m[0], o[1] + m[1], o[2] + m[2]
            o[3], o[4] = min(o[3], m[3]), max(o[4], m[4])
    boundaries = []
    for c in schema.numeric:
        if c.numeric.bucketize is not None:
            summary = sketches.get(c.name, Summary.empty())
            boundaries.append((c.name, tuple(summary.boundaries(c.numeric.bucketize.num_buckets))))
    scaling = []
    for c in schema.numeric:
        if c.numeric.scale == "none":
            continue
        n, s, ss, lo, hi = moments.get(c.name, [0.0, 0.0, 0.0, 0.0, 0.0])
        if c.numeric.scale == "zscore":
            mean = s / n if n else 0.0
            scaling.append((c.name, (mean, max(ss / n - mean * mean, 0.0) if n else 0.0)))
        else:
            scaling.append((c.name, (lo if n else 0.0, hi if n else 0.0)))
    logging.info("analysis of %d days merged from the cache %s", len(dates), root)
    return AnalysisPrior(prior_counts=tuple(counts), boundaries=tuple(boundaries), scaling=tuple(scaling),
                         ranges=ranges)


def _merged_ranges(docs: list[dict]) -> tuple[tuple[str, tuple[float, float]], ...]:
    """Each column's training range over the days; none when a day was cached before ranges were recorded
    (the transform then analyzes the range: over no rows, so it clips nothing, as before)."""
    if not all("ranges" in doc for doc in docs):
        return ()
    merged: dict[str, tuple[float, float]] = {}
    for doc in docs:
        for name, (lo, hi) in doc["ranges"].items():
            old_lo, old_hi = merged.get(name, (lo, hi))
            merged[name] = (min(old_lo, lo), max(old_hi, hi))
    return tuple(merged.items())

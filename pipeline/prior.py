"""What a preprocess run takes over instead of analyzing it: base vocabularies, kept numeric analysis.

``AnalysisPrior`` is handed to ``make_preprocessing_fn``:

- ``base_vocabularies``: asset name -> the previous run's vocabulary file; the
  fused analyzer extends it append-only (``pipeline.vocab_extend``);
- ``prior_counts``: asset name -> cached per-day token-count files to add to
  this run's counts (``beam_jobs.preprocess.analysis_cache``);
- ``boundaries``: column -> quantile boundaries to use instead of analyzing
  them (kept from the base, or merged from cached sketches);
- ``scaling``: column -> (shift, scale) for z-score (mean, variance) or
  min-max (min, max), from cached moments;
- ``ranges``: column -> training (min, max) of its present values, the clip
  before bucketizing and scaling (from the cache, whose run analyzes no row;
  a column without one is analyzed).

Kept boundaries come from ``analysis.json`` of the base when it has one (every
run with a prior writes it), else from the base's transform graph: TFT stores
each analyzer result as a constant of the saved graph, and a bucketize group's
constant is the only ``float32 [columns, num_buckets - 1]`` one.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import os

from apache_beam.io.filesystems import FileSystems

from ctrflow.common.errors import UserError
from ctrflow.pipeline import artifacts as af
from ctrflow.schemas.types import Schema


@dataclasses.dataclass(frozen=True)
class AnalysisPrior:
    base_vocabularies: tuple[tuple[str, str], ...] = ()
    prior_counts: tuple[tuple[str, tuple[str, ...]], ...] = ()
    boundaries: tuple[tuple[str, tuple[float, ...]], ...] = ()
    scaling: tuple[tuple[str, tuple[float, float]], ...] = ()
    ranges: tuple[tuple[str, tuple[float, float]], ...] = ()

    def base_vocabulary(self, name: str) -> str | None:
        return dict(self.base_vocabularies).get(name)

    def counts(self, name: str) -> tuple[str, ...]:
        return dict(self.prior_counts).get(name, ())

    def boundaries_of(self, column: str) -> tuple[float, ...] | None:
        return dict(self.boundaries).get(column)

    def scaling_of(self, column: str) -> tuple[float, float] | None:
        return dict(self.scaling).get(column)

    def range_of(self, column: str) -> tuple[float, float] | None:
        return dict(self.ranges).get(column)


def bucket_groups(schema: Schema) -> dict[tuple[int, float], list[str]]:
    """(num_buckets, epsilon) -> bucketized columns, the grouping ``tft.quantiles`` runs on."""
    groups: dict[tuple[int, float], list[str]] = collections.defaultdict(list)
    for c in schema.numeric:
        if c.numeric.bucketize is not None:
            groups[(c.numeric.bucketize.num_buckets, c.numeric.bucketize.epsilon)].append(c.name)
    return dict(groups)


def read_kept_boundaries(base: str, schema: Schema) -> dict[str, tuple[float, ...]]:
    """Every bucketized column's boundaries in the base run (see the module docstring)."""
    path = os.path.join(base, af.ANALYSIS)
    if FileSystems.exists(path):
        with FileSystems.open(path) as f:
            doc = json.loads(f.read())
        found = {k: tuple(v) for k, v in doc.get("boundaries", {}).items()}
    else:
        found = _boundaries_from_graph(base, schema)
    missing = [c.name for c in schema.numeric if c.numeric.bucketize is not None and c.name not in found]
    if missing:
        raise UserError(f"--base {base}: no bucket boundaries for {', '.join(missing)}; use --refit-buckets")
    return found


def _boundaries_from_graph(base: str, schema: Schema) -> dict[str, tuple[float, ...]]:
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(base, af.TRANSFORM_FN, af.SAVED_MODEL)
    if not FileSystems.exists(path):
        raise UserError(f"--base {base}: no {af.TRANSFORM_FN}/{af.SAVED_MODEL}; is it a `ctrflow preprocess` output?")
    saved = saved_model_pb2.SavedModel()
    with FileSystems.open(path) as f:
        saved.ParseFromString(f.read())
    by_shape: dict[tuple[int, int], list] = collections.defaultdict(list)
    for node in saved.meta_graphs[0].graph_def.node:
        if node.op == "Const" and node.attr["dtype"].type == tf.float32.as_datatype_enum:
            value = tf.make_ndarray(node.attr["value"].tensor)
            if value.ndim == 2:
                by_shape[value.shape].append(value)
    out: dict[str, tuple[float, ...]] = {}
    for (num_buckets, _), columns in bucket_groups(schema).items():
        candidates = by_shape.get((len(columns), num_buckets - 1), [])
        if len(candidates) != 1:
            raise UserError(f"--base {base}: cannot tell the bucket boundaries of {', '.join(columns)} apart in "
                             f"its transform graph ({len(candidates)} candidates); use --refit-buckets")
        for i, name in enumerate(columns):
            out[name] = tuple(float(v) for v in candidates[0][i])
    return out


def write_analysis(output: str, prior: AnalysisPrior | None) -> None:
    """Records the numeric analysis a run used when it was fixed up front, for the next --base."""
    if prior is None or not prior.boundaries:
        return
    doc = {"boundaries": {k: list(v) for k, v in prior.boundaries},
           "scaling": {k: list(v) for k, v in prior.scaling},
           "ranges": {k: list(v) for k, v in prior.ranges}}
    with FileSystems.create(os.path.join(output, af.ANALYSIS)) as f:
        f.write(json.dumps(doc, indent=2, sort_keys=True).encode())

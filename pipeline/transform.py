"""The tf.Transform side of a schema: raw spec, ``preprocessing_fn``, layout.

``make_preprocessing_fn(schema)`` builds the function TFT analyzes and then
embeds in the serving model, so every transform is written once, here.

Transformed features (see ``pipeline.layout`` for the tensor conventions).
Numeric values go: signed log1p (``sign(x) * log1p(|x|)``), then clip; a
missing value (NaN) then takes ``missing`` (default 0) on that transformed
scale, or its own bucket with ``missing: bucket``; quantiles ignore missing
values. A missing categorical value is the token ``schemas.MISSING_TOKEN``.

==============================  =========================================  =======
schema                          output feature                             dtype
==============================  =========================================  =======
numeric, bucketize              ``<name>``: quantile bucket id in          int64
  {num_buckets, epsilon}        [0, num_buckets) (+1 id for missing when
                                ``missing: bucket``) of the value clipped
                                to its training [min, max]; a repeated
                                quantile (point mass) gets a bucket of its
                                own
numeric, bucketize (per-column ``<name>__position``: where the value lies    float32
  layout)                       in its bucket, in [0, 1] (see
                                ``apply_edges``); 0 for missing
numeric, scale: zscore|minmax   ``<name>`` (or ``<name>__scaled`` beside a  float32
                                bucket id): (v - mean) / std, or
                                (v - min) / (max - min), of the value above
                                clipped to its training [min, max]
categorical, vocabulary         ``<name>``: vocabulary id (order: count    int64
  {top_k, frequency_threshold,  desc, token desc, as TFT); unseen values
  num_oov_buckets}              get id vocab_size + fingerprint % num_oov
categorical, hash {buckets}     ``<name>``: ``to_hash_bucket_fast`` id     int64
categorical, multivalent        ``<name>``: ragged [batch, None] ids of    int64
  {delimiter}                   the stripped, non-empty parts (vocabulary
                                or hash); no part -> [MISSING_TOKEN]
cross {columns, hash_buckets}   ``a_x_b``: hash of the components joined   int64
                                by \\x1f (token, or bucket id as text)
layout: global_index            ``feat_index`` [batch, fields] ids in one  int64
  {numeric: bucket|value}       space, ``feat_value`` [batch, fields]      float32
                                (see ``pipeline.global_index``); replaces
                                the per-column features above
label                           ``<name>``: 1.0 for a positive value       float32
weight                          ``<name>``: the row's weight, as parsed    float32
                                (a finite number >= 0), not a feature
pairwise: {group: col}          ``__group__``: 63-bit hash of col's value  int64
==============================  =========================================  =======

Analyzers are fused so a wide table costs one pass of each kind: one
``tft.quantiles`` per (num_buckets, epsilon) group over the stacked columns,
one elementwise mean/var (min/max) per scale kind, and ONE vocabulary
analyzer for all categorical columns (``pipeline.analyzers``).
"""
from __future__ import annotations

import collections
from typing import Callable

import numpy as np
import pyarrow as pa
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform import schema_inference
from tfx_bsl.tfxio import tensor_adapter

from ctrflow.pipeline.analyzers import VocabSpec, fused_vocabularies
from ctrflow.pipeline.column_sources import POSITION_SUFFIX, SCALED_SUFFIX  # noqa: F401 - names of outputs
from ctrflow.pipeline.global_index import (
    GLOBAL_VOCAB,
    INDEX_KEY,
    VALUE_KEY,
    feat_index_and_value,
    global_fields,
    global_index_layout,
)
from ctrflow.pipeline.layout import DenseFeature, FeatureLayout, SparseFeature, vocab_name  # noqa: F401
from ctrflow.pipeline.prior import AnalysisPrior
from ctrflow.pipeline.vocab_lookup import flat_tokens, missing_as, vocabulary_lookup
from ctrflow.schemas.types import MISSING_TOKEN, Column, Schema

GROUP_KEY = "__group__"  # int64 hash of the schema's pairwise group column


def raw_feature_spec(schema: Schema, with_label: bool = True) -> dict[str, tf.io.FixedLenFeature]:
    """The raw inputs of the transform: one scalar per row and feature.

    Missing values are NaN (numeric) and "" (categorical), also as parse
    defaults, so a tf.Example without the feature means "missing".
    """
    spec: dict[str, tf.io.FixedLenFeature] = {}
    for c in schema.features:
        if c.role == "numeric":
            spec[c.name] = tf.io.FixedLenFeature([], tf.float32, default_value=float("nan"))
        else:
            spec[c.name] = tf.io.FixedLenFeature([], tf.string, default_value="")
    if with_label and schema.label is not None:
        spec[schema.label.name] = tf.io.FixedLenFeature([], tf.float32)
    if with_label and schema.weight is not None:  # read beside the label: training data only, never scoring
        spec[schema.weight.name] = tf.io.FixedLenFeature([], tf.float32)
    return spec


def tensor_adapter_config(schema: Schema) -> tensor_adapter.TensorAdapterConfig:
    """How TFT turns our clean Arrow batches (see ``to_tft_batch``) into tensors."""
    fields, reps = [], {}
    for name, feature in raw_feature_spec(schema).items():
        arrow_type = pa.float32() if feature.dtype == tf.float32 else pa.large_binary()
        fields.append(pa.field(name, pa.large_list(arrow_type)))
        reps[name] = schema_pb2.TensorRepresentation(
            dense_tensor=schema_pb2.TensorRepresentation.DenseTensor(column_name=name))
    return tensor_adapter.TensorAdapterConfig(pa.schema(fields), reps)


def to_tft_batch(batch: pa.RecordBatch, adapter: tensor_adapter.TensorAdapterConfig) -> pa.RecordBatch:
    """Wraps each scalar column into the one-element lists TFT's adapter reads."""
    offsets = pa.array(np.arange(batch.num_rows + 1, dtype=np.int64))
    arrays = []
    for field in adapter.arrow_schema:
        values = batch.column(field.name).cast(field.type.value_type)
        arrays.append(pa.LargeListArray.from_arrays(offsets, values))
    return pa.RecordBatch.from_arrays(arrays, schema=adapter.arrow_schema)


def numeric_value(x: tf.Tensor, col: Column) -> tf.Tensor:
    """log1p/clip in the order the schema documents; NaN stays NaN.

    The per-day analysis runs this same function on its batches
    (``analysis_cache.numeric_value``), so its boundaries are of these exact values.
    """
    t = col.numeric
    if t.log1p:  # signed, so negative counts (Criteo I2) keep their order
        x = tf.sign(x) * tf.math.log1p(tf.abs(x))
    if t.clip is not None:
        lo, hi = t.clip
        if lo is not None:
            x = tf.where(tf.math.is_nan(x), x, tf.maximum(x, lo))
        if hi is not None:
            x = tf.where(tf.math.is_nan(x), x, tf.minimum(x, hi))
    return x


def separate_point_masses(boundaries: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Sorted boundaries ``[k, m]`` (one row per column) -> (edges ``[k, m]``, edge counts ``[k]``).

    Quantiles of a zero-inflated column (``capital_gain``: 92% zeros) repeat
    the point mass, ``[0, 0, ..., 0, 5000]``, which would put 0 and 3000 in
    one bucket. Each repeated value ``v`` becomes ``[v, nextafter(v)]`` so
    ``x == v`` has a bucket of its own. Never more boundaries than before, so
    row ``i``'s edges are its first ``counts[i]`` entries, sorted, and the rest
    is ``+inf`` padding: all columns of a group stay in one tensor, because
    tracing these ops once per column (about 70 graph ops per column, each
    paying for TensorFlow's stack capture) was a large share of a small
    preprocess run.
    """
    b = tf.convert_to_tensor(boundaries, tf.float32)
    no = tf.zeros_like(b[:, :1], tf.bool)
    repeats_previous = tf.concat([no, tf.equal(b[:, 1:], b[:, :-1])], axis=1)
    first_of_run = tf.logical_not(repeats_previous)
    second_of_run = repeats_previous & tf.concat([no, first_of_run[:, :-1]], axis=1)  # where nextafter(v) goes
    inf = tf.constant(float("inf"), tf.float32)
    after = tf.math.nextafter(b, tf.fill(tf.shape(b), inf))
    # nextafter(0) is a denormal, which CPU kernels flush to 0: use the smallest normal float
    after = tf.where(tf.equal(b, 0.0), tf.constant(np.finfo(np.float32).tiny), after)
    edges = tf.where(first_of_run, b, tf.where(second_of_run, after, inf))
    counts = tf.reduce_sum(tf.cast(first_of_run | second_of_run, tf.int64), axis=1)
    return tf.sort(edges, axis=1), counts


def apply_edges(x: tf.Tensor, edges: tf.Tensor, counts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(bucket ids, positions in bucket) ``[batch, k]`` of ``x`` ``[batch, k]`` for ``separate_point_masses`` edges.

    Bucket ``i`` holds ``e[i-1] <= x < e[i]``, as ``tft.apply_buckets``; ``+inf``
    padding never counts (ids are capped at the column's edge count). The
    position is where ``x`` lies inside its bucket, ``clip((x - lo) / (hi - lo),
    0, 1)``. The open-ended first and last buckets get the width of their
    neighbour (``lo = e[0] - (e[1] - e[0])``, ``hi = e[-1] + (e[-1] - e[-2])``),
    so values beyond it saturate at 0 / 1 and the encoding needs no analyzer
    beyond the boundaries (kept boundaries of ``--base`` suffice). An empty
    bucket (width 0) gives 0. With the bucket id this is the value's
    piecewise-linear encoding (``model.layers.ple_weights``): continuous at every
    edge, so the model can fit the trees' exact thresholds between quantiles.
    """
    columns_first = tf.transpose(x)  # [k, batch]: searchsorted and gather go row by row
    ids = tf.minimum(tf.searchsorted(edges, columns_first, side="right", out_type=tf.int64), counts[:, None])
    last = tf.maximum(counts - 1, 0)
    e_first, e_second = edges[:, 0], tf.gather(edges, tf.minimum(last, 1), batch_dims=1)
    e_last, e_before_last = tf.gather(edges, last, batch_dims=1), tf.gather(edges, tf.maximum(counts - 2, 0),
                                                                            batch_dims=1)
    two = counts >= 2  # a single edge: both outer buckets have width 0
    first_width = tf.where(two, e_second - e_first, 0.0)
    last_width = tf.where(two, e_last - e_before_last, 0.0)
    lo = tf.concat([(e_first - first_width)[:, None], edges], axis=1)  # [k, m + 1]: lo[j] = e[j-1]
    slot = tf.range(tf.shape(edges, out_type=tf.int64)[1] + 1)[None, :]
    hi = tf.where(tf.equal(slot, counts[:, None]), (e_last + last_width)[:, None],
                  tf.concat([edges, tf.fill([tf.shape(edges)[0], 1], float("inf"))], axis=1))
    lo_x, hi_x = tf.gather(lo, ids, batch_dims=1), tf.gather(hi, ids, batch_dims=1)
    span = hi_x - lo_x
    frac = tf.clip_by_value((columns_first - lo_x) / tf.where(span > 0, span, 1.0), 0.0, 1.0)
    positions = tf.where(span > 0, frac, tf.zeros_like(frac))
    return tf.transpose(ids), tf.transpose(positions)


def _bucketize_fused(values: dict[str, tf.Tensor], clipped: dict[str, tf.Tensor], cols: list[Column],
                     prior: AnalysisPrior | None = None) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
    """(bucket ids, positions in bucket) by column.

    One quantiles analyzer per (num_buckets, epsilon) group, and one chain of
    bucketizing ops for the group's stacked columns; NaNs are ignored by the
    sketch. A missing value in its own bucket has position 0. The sketch sees
    ``values``; the buckets are those of ``clipped`` (``_clip_to_training_range``:
    equal on the training rows, so the analysis stays one pass).
    """
    groups: dict[tuple[int, float], list[Column]] = collections.defaultdict(list)
    for c in cols:
        groups[(c.numeric.bucketize.num_buckets, c.numeric.bucketize.epsilon)].append(c)
    ids: dict[str, tf.Tensor] = {}
    positions: dict[str, tf.Tensor] = {}
    for (num_buckets, epsilon), group in sorted(groups.items()):
        stacked = tf.stack([values[c.name] for c in group], axis=1)
        kept = [prior.boundaries_of(c.name) for c in group] if prior is not None else [None]
        if all(b is not None for b in kept):  # fixed up front (--base, analysis cache): no analyzer
            boundaries = tf.constant(kept, tf.float32)
        else:
            boundaries = tft.quantiles(stacked, num_buckets=num_buckets, epsilon=epsilon,
                                       reduce_instance_dims=False, name=f"quantiles_{num_buckets}")
        missing = tf.math.is_nan(stacked)
        in_range = tf.stack([clipped[c.name] for c in group], axis=1)
        filled = tf.where(missing, tf.constant([c.numeric.default for c in group], tf.float32), in_range)
        edges, counts = separate_point_masses(boundaries)
        bucket, position = apply_edges(filled, edges, counts)
        if any(c.numeric.missing_bucket for c in group):
            own_bucket = missing & tf.constant([c.numeric.missing_bucket for c in group])
            bucket = tf.where(own_bucket, tf.constant(num_buckets, tf.int64), bucket)
            position = tf.where(own_bucket, 0.0, position)
        max_ids = tf.cast(counts, tf.int32)
        for i, c in enumerate(group):
            ids[c.name], positions[c.name] = bucket[:, i], position[:, i]
            if not c.numeric.missing_bucket:  # the schema domain tft.apply_buckets gives: [0, edge count]
                schema_inference.set_tensor_schema_override(ids[c.name], tf.constant(0, tf.int64), max_ids[i])
    return ids, positions


def _fixed_scale(x: tf.Tensor, kind: str, params: list[tuple[float, float]]) -> tf.Tensor:
    """TFT's z-score / min-max formulas with known (mean, var) / (min, max) per column."""
    a = tf.constant([p[0] for p in params], tf.float32)
    b = tf.constant([p[1] for p in params], tf.float32)
    if kind == "zscore":
        sd = tf.sqrt(b)
        return tf.where(tf.not_equal(sd, 0), (x - a) / tf.where(tf.equal(sd, 0), 1.0, sd), x - a)
    span = b - a
    return tf.where(span > 0, (x - a) / tf.where(span > 0, span, 1.0), tf.fill(tf.shape(x), 0.5))


def _scale_fused(clipped: dict[str, tf.Tensor], cols: list[Column],
                 prior: AnalysisPrior | None = None) -> dict[str, tf.Tensor]:
    """One elementwise mean/var (or min/max) analyzer per scale kind over the stacked columns.

    ``clipped``: the values clipped to their training range (``_clip_to_training_range``).
    """
    out: dict[str, tf.Tensor] = {}
    for kind, scale in (("zscore", tft.scale_to_z_score), ("minmax", tft.scale_to_0_1)):
        group = [c for c in cols if c.numeric.scale == kind]
        if group:
            stacked = tf.stack([_filled(clipped[c.name], c) for c in group], axis=1)
            fixed = [prior.scaling_of(c.name) for c in group] if prior is not None else [None]
            if all(f is not None for f in fixed):
                scaled = _fixed_scale(stacked, kind, fixed)
            else:
                scaled = scale(stacked, elementwise=True, name=kind)
            out.update({c.name: scaled[:, i] for i, c in enumerate(group)})
    return out


def clipped_columns(schema: Schema) -> list[Column]:
    """The numeric columns clipped to their training range: the bucketized and the scaled ones."""
    return [c for c in schema.numeric if c.numeric.bucketize is not None or c.numeric.scale != "none"]


def _clip_to_training_range(values: dict[str, tf.Tensor], cols: list[Column],
                            prior: AnalysisPrior | None = None) -> dict[str, tf.Tensor]:
    """Each column's values clipped to its training [min, max]; NaN (missing) stays NaN.

    So a value far outside the training range (a unit change upstream, 1e30)
    moves the score no further than the training extreme does, on both the
    scaled and the bucketized path. Bucket ids alone do not saturate there: a
    point mass at the training maximum (census ``capital_gain`` = 99999 with
    5000 quantiles) has a bucket of its own, and the bucket above it never
    sees a training row, so its embedding row stays at its initial value
    (``tests/test_score_job``: 1e30 scored 0.001 away from 99999 before this
    clip). Likewise below a point mass at the minimum. One elementwise
    min/max analyzer over every bucketized or scaled column; it reads the raw
    values, so it runs in the same analysis pass as the quantiles. With the
    per-day analysis cache no row is analyzed: ``prior.ranges`` gives them
    (a column with no present value there is not clipped).
    """
    if not cols:
        return {}
    x = tf.stack([values[c.name] for c in cols], axis=1)
    missing = tf.math.is_nan(x)
    inf = tf.constant(float("inf"), x.dtype)
    if prior is not None and prior.ranges:
        kept = [prior.range_of(c.name) or (float("inf"), float("-inf")) for c in cols]
        lo = tf.constant([r[0] for r in kept], tf.float32)
        hi = tf.constant([r[1] for r in kept], tf.float32)
    else:
        lo = tft.min(tf.where(missing, inf, x), reduce_instance_dims=False, name="training_range_min")
        hi = tft.max(tf.where(missing, -inf, x), reduce_instance_dims=False, name="training_range_max")
    seen = lo <= hi  # a column with no present training value is left as it is
    clipped = tf.where(missing, x, tf.where(seen, tf.minimum(tf.maximum(x, lo), hi), x))
    return {c.name: clipped[:, i] for i, c in enumerate(cols)}


def _filled(x: tf.Tensor, col: Column) -> tf.Tensor:
    return tf.where(tf.math.is_nan(x), tf.constant(col.numeric.default, tf.float32), x)


def categorical_tokens(x: tf.Tensor, col: Column) -> tf.Tensor | tf.RaggedTensor:
    """Missing -> ``MISSING_TOKEN``; multivalent: ragged [batch, None] of stripped non-empty parts.

    Rule 5 of ``schemas.raw_rules`` (``tf.strings.strip``: ASCII whitespace);
    ``analysis_cache.tokens`` is its Arrow twin, held to the same golden table.

    What the analyzers, crosses and the global index see. A single-valued
    column's ids are looked up from the raw strings instead (``_id_input``).
    """
    delimiter = col.categorical.multivalent_delimiter
    if delimiter is None:
        return tf.where(tf.equal(x, ""), tf.constant(MISSING_TOKEN), x)
    parts = tf.strings.strip(tf.strings.split(x, sep=delimiter))
    parts = tf.ragged.boolean_mask(parts, tf.not_equal(parts, ""))
    empty = tf.cast(tf.equal(parts.row_lengths(), 0), tf.int64)
    missing = tf.RaggedTensor.from_row_lengths(tf.fill([tf.reduce_sum(empty)], MISSING_TOKEN), empty)
    return tf.concat([parts, missing], axis=1)


def _id_input(raw: tf.Tensor, tokens: tf.Tensor | tf.RaggedTensor, col: Column) -> tuple[tf.Tensor, str | None]:
    """What a column's ids are computed from: (raw strings, the token for "") or (tokens, None).

    A single-valued column's ids come from its raw strings, "" then mapped to
    ``MISSING_TOKEN``'s id (``vocab_lookup.missing_as``): the same ids as
    from its tokens, without a select over strings.
    """
    if col.categorical.multivalent_delimiter is None:
        return raw, MISSING_TOKEN
    return tokens, None


def _hashed(x: tf.Tensor | tf.RaggedTensor, missing_token: str | None, buckets: int):
    ids = tf.ragged.map_flat_values(tf.strings.to_hash_bucket_fast, x, buckets)
    if missing_token is None:
        return ids
    return missing_as(x, ids, lambda t: tf.strings.to_hash_bucket_fast(t, buckets), missing_token)


def _categorical_ids(tokens: dict[str, tf.Tensor], raw: dict[str, tf.Tensor], schema: Schema,
                     global_name: str | None = None, prior: AnalysisPrior | None = None):
    """Ids of every categorical column: hashes, and ONE fused analyzer for all vocabularies.

    Returns (ids by column, global vocabulary file or None). With a global
    index the per-column ids are not needed, only the vocabularies.
    """
    vocab_cols = [c for c in schema.categorical if c.categorical.vocabulary is not None]
    vocab_index = {c.name: i for i, c in enumerate(vocab_cols)}
    prior = prior or AnalysisPrior()
    specs = [VocabSpec(vocab_name(c.name), v.top_k, v.frequency_threshold,
                       prior.base_vocabulary(vocab_name(c.name)), prior.counts(vocab_name(c.name)))
             for c, v in ((c, c.categorical.vocabulary) for c in vocab_cols)]
    flat = [flat_tokens(tokens[c.name]) for c in vocab_cols]
    fields = global_fields(schema, vocab_index) if global_name else ()
    base_global = prior.base_vocabulary(global_name) if global_name else None
    files, global_file = (fused_vocabularies(flat, specs, fields, global_name, base_global)
                          if specs or global_name else ([], None))
    ids: dict[str, tf.Tensor] = {}
    if global_name is not None:
        return ids, global_file
    for c in schema.categorical:
        t = c.categorical
        x, missing_token = _id_input(raw[c.name], tokens[c.name], c)
        if t.hash is not None:
            ids[c.name] = _hashed(x, missing_token, t.hash.buckets)
        else:
            ids[c.name] = tft.apply_vocabulary(
                x, files[vocab_index[c.name]],
                lookup_fn=vocabulary_lookup(t.vocabulary.num_oov_buckets, missing_token))
    return ids, global_file


def make_preprocessing_fn(schema: Schema, prior: AnalysisPrior | None = None,
                          ) -> Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]]:
    """The TFT preprocessing_fn for ``schema`` (see the module docstring).

    ``prior`` (``pipeline.prior``): vocabularies to extend and numeric analysis
    fixed up front instead of analyzed.
    """

    def preprocessing_fn(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        outputs: dict[str, tf.Tensor] = {}
        values = {c.name: numeric_value(inputs[c.name], c) for c in schema.numeric}
        bucketized = [c for c in schema.numeric if c.numeric.bucketize is not None]
        to_scale = [c for c in schema.numeric if c.numeric.scale != "none"]
        clipped = _clip_to_training_range(values, clipped_columns(schema), prior)
        buckets, positions = _bucketize_fused(values, clipped, bucketized, prior)
        scaled = _scale_fused(clipped, to_scale, prior)
        tokens = {c.name: categorical_tokens(inputs[c.name], c) for c in schema.categorical}
        global_name = GLOBAL_VOCAB if schema.global_index is not None else None
        ids, global_file = _categorical_ids(tokens, inputs, schema, global_name, prior)
        if schema.global_index is None:
            outputs.update(buckets)
            outputs.update({name + POSITION_SUFFIX: p for name, p in positions.items()})
            for name, x in scaled.items():
                outputs[name + SCALED_SUFFIX if name in outputs else name] = x
            outputs.update(ids)
        else:
            field_values = {c.name: scaled.get(c.name, _filled(values[c.name], c)) for c in schema.numeric}
            outputs[INDEX_KEY], outputs[VALUE_KEY] = feat_index_and_value(
                schema, tokens, buckets, field_values, global_file)
        for cross in schema.crosses:
            parts = [_cross_part(tokens, buckets, schema.column(n)) for n in cross.columns]
            joined = tf.strings.reduce_join(tf.stack(parts, axis=1), axis=1, separator="\x1f")
            outputs[cross.name] = tf.strings.to_hash_bucket_fast(joined, cross.hash_buckets)
        label = schema.label
        if label is not None and label.name in inputs:
            outputs[label.name] = inputs[label.name]
        weight = schema.weight
        if weight is not None and weight.name in inputs:  # passed through as the label is
            outputs[weight.name] = inputs[weight.name]
        if schema.pairwise_group is not None:  # pairs for the pairwise loss are formed within a group
            outputs[GROUP_KEY] = tf.strings.to_hash_bucket_fast(inputs[schema.pairwise_group], 2**63 - 1)
        return outputs

    return preprocessing_fn


def _cross_part(tokens: dict[str, tf.Tensor], buckets: dict[str, tf.Tensor], col: Column) -> tf.Tensor:
    """A cross component: the category string, or the bucket id as a string."""
    if col.role == "categorical":
        return tokens[col.name]
    return tf.strings.as_string(buckets[col.name])


def build_layout(schema: Schema, vocabulary_size: Callable[[str], int]) -> FeatureLayout:
    """The model-facing description of the transformed features.

    ``vocabulary_size(asset_name)`` reads an analyzed vocabulary's size (from
    ``tft.TFTransformOutput.vocabulary_size_by_name``).
    """
    crosses = tuple(SparseFeature(x.name, x.hash_buckets, wide_only=True) for x in schema.crosses)
    label = schema.label.name if schema.label is not None else ""
    group_key = GROUP_KEY if schema.pairwise_group is not None else None
    weight = schema.weight.name if schema.weight is not None else None
    if schema.global_index is not None:
        return FeatureLayout(sparse=crosses, dense=(), label=label, group_key=group_key, weight=weight,
                             global_index=global_index_layout(schema, vocabulary_size))
    sparse: list[SparseFeature] = []
    dense: list[DenseFeature] = []
    for c in schema.numeric:
        t = c.numeric
        if t.bucketize is not None:
            sparse.append(SparseFeature(c.name, t.bucketize.num_buckets + int(t.missing_bucket), group=c.group,
                                        position=c.name + POSITION_SUFFIX,
                                        missing_id=t.bucketize.num_buckets if t.missing_bucket else None))
        if t.scale != "none":
            dense.append(DenseFeature(c.name + SCALED_SUFFIX if t.bucketize is not None else c.name))
    for c in schema.categorical:
        t = c.categorical
        if t.hash is not None:
            n = t.hash.buckets
        else:
            n = vocabulary_size(vocab_name(c.name)) + t.vocabulary.num_oov_buckets
        sparse.append(SparseFeature(c.name, n, multivalent=t.multivalent_delimiter is not None, group=c.group))
    return FeatureLayout(sparse=tuple(sparse) + crosses, dense=tuple(dense), label=label, group_key=group_key,
                         weight=weight)

"""The tf.Transform side of a schema: raw spec, ``preprocessing_fn``, layout.

``make_preprocessing_fn(schema)`` builds the function TFT analyzes and then
embeds in the serving model, so every transform is written once, here.

Transformed features (see ``pipeline.layout`` for the tensor conventions):

============================  =========================================  =======
schema                        output feature                             dtype
============================  =========================================  =======
numeric, bucketize            ``<name>``: quantile bucket id in          int64
                              [0, num_buckets) (+1 id for missing when
                              ``missing: bucket``)
numeric, scale                ``<name>`` (or ``<name>__scaled`` beside a  float32
                              bucket id): z-score or min-max of the
                              value after default/log1p/clip
categorical, vocabulary       ``<name>``: vocabulary id; unseen values   int64
                              get one of num_oov_buckets ids after it
categorical, hash             ``<name>``: fingerprint hash bucket        int64
cross                         ``a_x_b``: hash of the joined component    int64
                              values/ids into hash_buckets (wide only)
label                         ``<name>``: 1.0 for a positive value       float32
============================  =========================================  =======

Numeric analyzers are fused: one ``tft.quantiles`` call per (num_buckets,
epsilon) group over the stacked columns, so a wide table costs one sketch.
"""
from __future__ import annotations

import collections
from typing import Callable

import numpy as np
import pyarrow as pa
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx_bsl.tfxio import tensor_adapter

from pipeline.layout import DenseFeature, FeatureLayout, SparseFeature
from schemas.types import MISSING_TOKEN, Column, Schema

SCALED_SUFFIX = "__scaled"


def vocab_name(column: str) -> str:
    """Name of a column's vocabulary asset in the transform graph."""
    return f"vocab_{column}"


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
    offsets = pa.array(range(batch.num_rows + 1), pa.int64())
    arrays = []
    for field in adapter.arrow_schema:
        values = batch.column(field.name).cast(field.type.value_type)
        arrays.append(pa.LargeListArray.from_arrays(offsets, values))
    return pa.RecordBatch.from_arrays(arrays, schema=adapter.arrow_schema)


def _numeric_value(x: tf.Tensor, col: Column) -> tf.Tensor:
    """log1p/clip in the order the schema documents; NaN stays NaN."""
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


def separate_point_masses(boundaries: tf.Tensor) -> tf.Tensor:
    """Sorted boundaries ``[k]`` -> boundaries where a repeated value gets its own bucket.

    Quantiles of a zero-inflated column (``capital_gain``: 92% zeros) repeat
    the point mass, ``[0, 0, ..., 0, 5000]``, which would put 0 and 3000 in
    one bucket. Each repeated value ``v`` becomes ``[v, nextafter(v)]`` so
    ``x == v`` has a bucket of its own. Never more boundaries than before.
    """
    b = tf.reshape(boundaries, [-1])
    same_as_next = tf.concat([tf.equal(b[1:], b[:-1]), [False]], axis=0)
    first_of_run = tf.concat([[True], tf.not_equal(b[1:], b[:-1])], axis=0)
    unique = tf.boolean_mask(b, first_of_run)
    repeated = tf.boolean_mask(b, first_of_run & same_as_next)
    after = tf.math.nextafter(repeated, tf.fill(tf.shape(repeated), tf.constant(float("inf"), b.dtype)))
    # nextafter(0) is a denormal, which CPU kernels flush to 0: use the smallest normal float
    after = tf.where(tf.equal(repeated, 0.0), tf.constant(np.finfo(np.float32).tiny, b.dtype), after)
    return tf.reshape(tf.sort(tf.concat([unique, after], axis=0)), [1, -1])


def _bucketize_fused(values: dict[str, tf.Tensor], cols: list[Column]) -> dict[str, tf.Tensor]:
    """One quantiles analyzer per (num_buckets, epsilon) group; NaNs are ignored by the sketch."""
    groups: dict[tuple[int, float], list[Column]] = collections.defaultdict(list)
    for c in cols:
        groups[(c.numeric.bucketize.num_buckets, c.numeric.bucketize.epsilon)].append(c)
    ids: dict[str, tf.Tensor] = {}
    for (num_buckets, epsilon), group in sorted(groups.items()):
        stacked = tf.stack([values[c.name] for c in group], axis=1)
        boundaries = tft.quantiles(stacked, num_buckets=num_buckets, epsilon=epsilon,
                                   reduce_instance_dims=False, name=f"quantiles_{num_buckets}")
        for i, c in enumerate(group):
            x = values[c.name]
            missing = tf.math.is_nan(x)
            filled = tf.where(missing, tf.constant(c.numeric.default, tf.float32), x)
            bucket = tft.apply_buckets(filled, separate_point_masses(boundaries[i]))
            if c.numeric.missing_bucket:
                bucket = tf.where(missing, tf.constant(num_buckets, tf.int64), bucket)
            ids[c.name] = bucket
    return ids


def _scaled(x: tf.Tensor, col: Column) -> tf.Tensor:
    filled = tf.where(tf.math.is_nan(x), tf.constant(col.numeric.default, tf.float32), x)
    if col.numeric.scale == "zscore":
        return tft.scale_to_z_score(filled, name=f"zscore_{col.name}")
    return tft.scale_to_0_1(filled, name=f"minmax_{col.name}")


def _categorical_ids(x: tf.Tensor, col: Column) -> tf.Tensor:
    t = col.categorical
    tokens = tf.where(tf.equal(x, ""), tf.constant(MISSING_TOKEN), x)
    if t.hash is not None:
        return tf.strings.to_hash_bucket_fast(tokens, t.hash.buckets)
    v = t.vocabulary
    return tft.compute_and_apply_vocabulary(
        tokens, top_k=v.top_k, frequency_threshold=v.frequency_threshold if v.frequency_threshold > 1 else None,
        num_oov_buckets=v.num_oov_buckets, vocab_filename=vocab_name(col.name), name=f"vocab_{col.name}")


def make_preprocessing_fn(schema: Schema) -> Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]]:
    """The TFT preprocessing_fn for ``schema`` (see the module docstring)."""

    def preprocessing_fn(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        outputs: dict[str, tf.Tensor] = {}
        values = {c.name: _numeric_value(inputs[c.name], c) for c in schema.numeric}
        bucketized = [c for c in schema.numeric if c.numeric.bucketize is not None]
        outputs.update(_bucketize_fused(values, bucketized))
        for c in schema.numeric:
            if c.numeric.scale != "none":
                key = c.name + SCALED_SUFFIX if c.name in outputs else c.name
                outputs[key] = _scaled(values[c.name], c)
        for c in schema.categorical:
            outputs[c.name] = _categorical_ids(inputs[c.name], c)
        for cross in schema.crosses:
            parts = [_cross_part(inputs, outputs, schema.column(n)) for n in cross.columns]
            joined = tf.strings.reduce_join(tf.stack(parts, axis=1), axis=1, separator="\x1f")
            outputs[cross.name] = tf.strings.to_hash_bucket_fast(joined, cross.hash_buckets)
        label = schema.label
        if label is not None and label.name in inputs:
            outputs[label.name] = inputs[label.name]
        return outputs

    return preprocessing_fn


def _cross_part(inputs: dict[str, tf.Tensor], outputs: dict[str, tf.Tensor], col: Column) -> tf.Tensor:
    """A cross component: the category string, or the bucket id as a string."""
    if col.role == "categorical":
        return tf.where(tf.equal(inputs[col.name], ""), tf.constant(MISSING_TOKEN), inputs[col.name])
    return tf.strings.as_string(outputs[col.name])


def build_layout(schema: Schema, vocabulary_size: Callable[[str], int]) -> FeatureLayout:
    """The model-facing description of the transformed features.

    ``vocabulary_size(asset_name)`` reads an analyzed vocabulary's size (from
    ``tft.TFTransformOutput.vocabulary_size_by_name``).
    """
    sparse: list[SparseFeature] = []
    dense: list[DenseFeature] = []
    for c in schema.numeric:
        t = c.numeric
        if t.bucketize is not None:
            sparse.append(SparseFeature(c.name, t.bucketize.num_buckets + int(t.missing_bucket), group=c.group))
        if t.scale != "none":
            dense.append(DenseFeature(c.name + SCALED_SUFFIX if t.bucketize is not None else c.name))
    for c in schema.categorical:
        t = c.categorical
        if t.hash is not None:
            n = t.hash.buckets
        else:
            n = vocabulary_size(vocab_name(c.name)) + t.vocabulary.num_oov_buckets
        sparse.append(SparseFeature(c.name, n, multivalent=t.multivalent_delimiter is not None, group=c.group))
    for x in schema.crosses:
        sparse.append(SparseFeature(x.name, x.hash_buckets, wide_only=True))
    label = schema.label.name if schema.label is not None else ""
    return FeatureLayout(sparse=tuple(sparse), dense=tuple(dense), label=label)

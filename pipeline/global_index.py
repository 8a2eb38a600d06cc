"""DeepFM's ``feat_index``/``feat_value`` layout: one id space over every feature field.

Every feature field (schema order) becomes one field-prefixed token per row,
and ``feat_index`` is that token's line in ONE global vocabulary asset
(``GLOBAL_VOCAB``), written by the fused vocabulary analyzer:

- categorical, vocabulary: ``C3=<token>`` in the column's vocabulary order,
  then ``C3=__oov<k>__`` for its num_oov_buckets ids (an unseen token takes
  ``k = fingerprint % num_oov_buckets``, the bucket TFT's lookup gives it);
- categorical, hash: ``C3=__hash<k>__`` per bucket;
- numeric as bucket: ``I1=__bucket<k>__`` per bucket id (k = num_buckets is
  the missing bucket), ``feat_value`` 1;
- numeric as value: one id ``I1=__value__`` whose ``feat_value`` is the
  scaled value (z-score/min-max when the column scales, else the value after
  default/log1p/clip).

``feat_value`` is 1.0 for every id field. The file doubles as the meaning of
every global id, and its length is ``GlobalIndex.num_ids``.
"""
from __future__ import annotations

from typing import Callable

import tensorflow as tf
import tensorflow_transform as tft

from ctrflow.pipeline.analyzers import GlobalField
from ctrflow.pipeline.layout import GlobalIndex
from ctrflow.pipeline.vocab_lookup import lookup_with_fallback, oov_buckets
from ctrflow.schemas.types import Column, Schema

GLOBAL_VOCAB = "vocab__global"
INDEX_KEY, VALUE_KEY = "feat_index", "feat_value"


def as_value(schema: Schema, col: Column) -> bool:
    """Whether a numeric field contributes its value (one id) rather than its bucket id."""
    return col.numeric.bucketize is None or schema.global_index.numeric == "value"


def _extra_ids(schema: Schema, col: Column) -> tuple[str, ...]:
    """Names of the field's ids that are not vocabulary tokens."""
    if col.role == "numeric":
        if as_value(schema, col):
            return ("__value__",)
        n = col.numeric.bucketize.num_buckets + int(col.numeric.missing_bucket)
        return tuple(f"__bucket{k}__" for k in range(n))
    t = col.categorical
    if t.hash is not None:
        return tuple(f"__hash{k}__" for k in range(t.hash.buckets))
    return tuple(f"__oov{k}__" for k in range(t.vocabulary.num_oov_buckets))


def global_fields(schema: Schema, vocab_index: dict[str, int]) -> tuple[GlobalField, ...]:
    """The analyzer's description of every field, for writing ``GLOBAL_VOCAB``."""
    return tuple(GlobalField(c.name, vocab_index.get(c.name), _extra_ids(schema, c)) for c in schema.features)


def _keys(schema: Schema, col: Column, tokens: dict[str, tf.Tensor],
          buckets: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
    """A non-value field's (token, token used when the first is not in the vocabulary)."""
    prefix = col.name + "="
    if col.role == "numeric":
        key = prefix + "__bucket" + tf.strings.as_string(buckets[col.name]) + "__"
        return key, key
    t, x = col.categorical, tokens[col.name]
    if t.hash is not None:
        key = prefix + "__hash" + tf.strings.as_string(tf.strings.to_hash_bucket_fast(x, t.hash.buckets)) + "__"
        return key, key
    oov = oov_buckets(x, t.vocabulary.num_oov_buckets)
    return prefix + x, prefix + "__oov" + tf.strings.as_string(oov) + "__"


def feat_index_and_value(schema: Schema, tokens: dict[str, tf.Tensor], buckets: dict[str, tf.Tensor],
                         values: dict[str, tf.Tensor], global_file: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``feat_index`` int64 [batch, fields] and ``feat_value`` float32 [batch, fields].

    ``tokens``: categorical tokens; ``buckets``: numeric bucket ids;
    ``values``: every numeric field's float value.
    """
    keys, fallback, value = [], [], []
    for c in schema.features:
        if c.role == "numeric" and as_value(schema, c):
            key = tf.fill(tf.shape(values[c.name]), f"{c.name}=__value__")
            keys.append(key)
            fallback.append(key)
            value.append(values[c.name])
            continue
        key, other = _keys(schema, c, tokens, buckets)
        keys.append(key)
        fallback.append(other)
        value.append(tf.ones(tf.shape(key), tf.float32))
    index = tft.apply_vocabulary(tf.stack([tf.stack(keys, axis=1), tf.stack(fallback, axis=1)]), global_file,
                                 lookup_fn=lookup_with_fallback)  # one table for both lookups
    return index, tf.stack(value, axis=1)


def global_index_layout(schema: Schema, vocabulary_size: Callable[[str], int]) -> GlobalIndex:
    return GlobalIndex(num_ids=vocabulary_size(GLOBAL_VOCAB), num_fields=len(schema.features),
                       fields=tuple(c.name for c in schema.features), index_key=INDEX_KEY, value_key=VALUE_KEY)

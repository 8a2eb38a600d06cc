"""Raw field text -> the transform's inputs, in TensorFlow, for the exported serving signatures.

The batch jobs normalize raw values in ``pipeline.parsing.BatchParser``
(Arrow): strip whitespace, null markers -> missing, numbers parsed. A TF
Serving client sends the file's text (``" Private"``, ``"?"``, ``""``), so the
exported signatures do the same normalization here, inside the graph:

- ``strip`` (CSV schemas with ``strip: true``): ASCII whitespace around the value;
- a null marker (after strip), or a feature absent from a tf.Example, is missing:
  NaN for numeric columns, ``""`` for categorical ones (the transform maps it
  to ``MISSING_TOKEN``);
- numeric text is parsed as float32; text that is not a number, or a number
  that is not finite (``inf``, ``1e400``, ``nan`` unless a null marker), fails
  the request with InvalidArgument naming the column: the batch job rejects
  such a row, a serving call cannot drop it silently.

Tests feed both paths the same raw rows and compare scores to 1e-6.
"""
from __future__ import annotations

import tensorflow as tf

from ctrflow.schemas.types import Schema


def _strip(schema: Schema) -> bool:
    return schema.format.strip and schema.format.type == "csv"


def normalize(schema: Schema, text: dict[str, tf.Tensor], absent: dict[str, tf.Tensor] | None = None):
    """``{feature: tf.string [batch]}`` (and optional ``absent`` masks) -> typed raw features."""
    out: dict[str, tf.Tensor] = {}
    markers = tuple(schema.format.null_markers)
    for col in schema.features:
        x = text[col.name]
        if _strip(schema):
            x = tf.strings.strip(x)
        missing = tf.zeros_like(x, dtype=tf.bool)
        for marker in markers:
            missing = tf.logical_or(missing, tf.equal(x, marker))
        if absent is not None and col.name in absent:
            missing = tf.logical_or(missing, absent[col.name])
        if col.role == "numeric":
            out[col.name] = _number(col.name, x, missing)
        else:
            out[col.name] = tf.where(missing, tf.constant(""), x)
    return out


def _number(name: str, x: tf.Tensor, missing: tf.Tensor) -> tf.Tensor:
    value = tf.strings.to_number(tf.where(missing, tf.constant("0"), x), tf.float32)
    ok = tf.logical_or(missing, tf.math.is_finite(value))
    check = tf.debugging.Assert(tf.reduce_all(ok), [f"column {name!r}: not a finite number:",
                                                    tf.boolean_mask(x, tf.logical_not(ok))], summarize=5)
    with tf.control_dependencies([check]):
        return tf.where(missing, tf.constant(float("nan")), value)


def example_spec(schema: Schema) -> dict[str, tf.io.RaggedFeature]:
    """Raw tf.Examples: every feature a bytes_list holding the field's text (absent = missing)."""
    return {c.name: tf.io.RaggedFeature(tf.string) for c in schema.features}


def parse_examples(schema: Schema, examples: tf.Tensor) -> dict[str, tf.Tensor]:
    """Serialized raw tf.Examples -> typed raw features (``normalize`` of their text)."""
    parsed = tf.io.parse_example(examples, example_spec(schema))
    text, absent = {}, {}
    for name, values in parsed.items():
        text[name] = values.to_tensor(default_value="", shape=[None, 1])[:, 0]
        absent[name] = tf.equal(values.row_lengths(), 0)
    return normalize(schema, text, absent)

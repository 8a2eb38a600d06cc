"""Raw field text -> the transform's inputs, in TensorFlow, for the exported serving signatures.

The batch jobs normalize raw values in ``pipeline.parsing.BatchParser``
(Arrow). A TF Serving client sends the file's text (``" Private"``, ``"?"``,
``""``), so the exported signatures apply the same rules (``schemas.raw_rules``:
strip, null markers, what a number is, finiteness) here, inside the graph. A
feature absent from a tf.Example is missing. Where the batch job rejects a
row (text that is not a number, or a number that is not finite), a serving
call cannot drop it silently: the request fails with InvalidArgument naming
the column(s).

``tests/test_raw_value_rules.py`` runs both over the golden table of raw
values; other tests feed both paths the same raw rows and compare scores to 1e-6.
"""
from __future__ import annotations

from typing import Callable

import tensorflow as tf

from ctrflow.schemas import raw_rules
from ctrflow.schemas.types import Schema


def normalize(schema: Schema, text: dict[str, tf.Tensor], absent: dict[str, tf.Tensor] | None = None):
    """``{feature: tf.string [batch]}`` (and optional ``absent`` masks) -> typed raw features."""
    def stacked(names: list[str]):
        x = tf.stack([text[n] for n in names], axis=1)
        if not absent:
            return x, None
        flags = [absent[n] if n in absent else tf.zeros_like(text[n], dtype=tf.bool) for n in names]
        return x, tf.stack(flags, axis=1)

    return _normalize_kinds(schema, stacked)


# names -> (their text as a [batch, columns] matrix, their absent mask or None)
Stacked = Callable[[list[str]], tuple[tf.Tensor, tf.Tensor | None]]


def _normalize_kinds(schema: Schema, stacked: Stacked) -> dict[str, tf.Tensor]:
    """Normalizes the numeric columns as one ``[batch, columns]`` text matrix, and the others as another.

    ``stacked(names)`` gives the text matrix of those columns and their
    absent mask (or None). One chain of ops per kind instead of one per
    column: these ops were most of the nodes of the two text signatures, and
    the nodes are what ``tf.saved_model.load`` spends its time on (figures in
    ``model.export``'s module docstring).
    """
    out: dict[str, tf.Tensor] = {}
    for numeric in (True, False):
        names = [c.name for c in schema.features if (c.role == "numeric") == numeric]
        if not names:
            continue
        x, absent = stacked(names)
        if raw_rules.strips(schema.format):
            x = tf.strings.strip(x)
        missing = tf.zeros_like(x, dtype=tf.bool)
        for marker in schema.format.null_markers:
            missing = tf.logical_or(missing, tf.equal(x, marker))
        if absent is not None:
            missing = tf.logical_or(missing, absent)
        values = _numbers(names, x, missing) if numeric else tf.where(missing, tf.constant(""), x)
        out.update(zip(names, tf.unstack(values, num=len(names), axis=1)))
    return {c.name: out[c.name] for c in schema.features}


def _numbers(names: list[str], x: tf.Tensor, missing: tf.Tensor) -> tf.Tensor:
    """float32 values of ``x`` [batch, columns], NaN where missing; fails naming the columns of a value that is
    not a finite number.

    The pattern comes first: ``tf.strings.to_number`` alone would also take
    hexadecimal and surrounding whitespace (``0x10``, ``" 5"`` unstripped),
    which the batch job rejects, and fails on other text without naming the column.
    """
    number = tf.logical_and(tf.logical_not(missing), tf.strings.regex_full_match(x, raw_rules.NUMBER_PATTERN))
    value = tf.strings.to_number(tf.where(number, x, tf.constant("0")), tf.float32)
    ok = tf.logical_or(missing, tf.logical_and(number, tf.math.is_finite(value)))
    bad_columns = tf.boolean_mask(tf.constant(names), tf.logical_not(tf.reduce_all(ok, axis=0)))
    check = tf.debugging.Assert(tf.reduce_all(ok), ["not a finite number in column(s)", bad_columns, "values:",
                                                    tf.boolean_mask(x, tf.logical_not(ok))], summarize=5)
    with tf.control_dependencies([check]):
        return tf.where(missing, tf.constant(float("nan")), value)


def example_spec(schema: Schema) -> dict[str, tf.io.RaggedFeature]:
    """Raw tf.Examples: every feature a bytes_list holding the field's text (absent = missing)."""
    return {c.name: tf.io.RaggedFeature(tf.string) for c in schema.features}


def parse_examples(schema: Schema, examples: tf.Tensor) -> dict[str, tf.Tensor]:
    """Serialized raw tf.Examples -> typed raw features (``normalize`` of their text).

    A feature's text is its first value; a feature with no value is absent
    (missing). (Stacking the ragged features before padding them made the
    signature's graph larger, not smaller.)
    """
    parsed = tf.io.parse_example(examples, example_spec(schema))

    def stacked(names: list[str]):
        x = tf.stack([parsed[n].to_tensor(default_value="", shape=[None, 1])[:, 0] for n in names], axis=1)
        return x, tf.stack([tf.equal(parsed[n].row_lengths(), 0) for n in names], axis=1)

    return _normalize_kinds(schema, stacked)

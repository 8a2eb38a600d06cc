"""A deterministic train/eval split of one input, on a key column or on the whole row.

A row goes to eval when FarmHash Fingerprint64 of its key text (TensorFlow's
``to_hash_bucket_fast``) modulo 10^9 is below ``fraction`` * 10^9. So the same
key lands in the same split in every run, on every runner and worker, whatever
the batching; Python's ``hash()`` is salted per process and would not.

The key text (``row_keys``) is one column's value as text (a missing value is
``""``, a missing number ``"nan"``), or for a table without an id column the
values of every feature column in schema order as text, joined by ``\x1f``.
A number's text is Arrow's: the shortest that reads back to the same float32
(``39``, ``0.1``, ``1e+20``). Rows sharing a key (a user, a session) stay
together, and so do identical rows, whatever their label: a duplicated row
never sits in both train and eval, which keeps eval honest.

Counters: rows sent to eval count as ``eval/input_rows`` and as
``<from>/split_out_rows``, so the manifest reports each split's own input and
input = output + rejected holds per split.
"""
from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from ctrflow.beam_jobs.input.transforms import COUNTER_NAMESPACE, counter_name
from ctrflow.schemas.types import Schema

_BUCKETS = 1_000_000_000
EVAL = "eval"


ROW_SEPARATOR = "\x1f"


def _text(values: pa.Array) -> pa.Array:
    return pc.fill_null(values if pa.types.is_string(values.type) else pc.cast(values, pa.string()), "")


def split_columns(schema: Schema, split_key: str | None) -> tuple[str, ...]:
    """The columns a row's split is decided by: ``--split-key``, or else every feature (a split by row)."""
    return (split_key,) if split_key else tuple(c.name for c in schema.features)


def row_keys(batch: pa.RecordBatch, columns: tuple[str, ...]) -> pa.Array:
    """The text each row's split is decided by: one column's value, or several joined by ``ROW_SEPARATOR``."""
    texts = [_text(batch.column(c)) for c in columns]
    return texts[0] if len(texts) == 1 else pc.binary_join_element_wise(*texts, ROW_SEPARATOR)


def eval_mask(keys: pa.Array, fraction: float) -> np.ndarray:
    """True for the rows whose key falls in the eval fraction."""
    import tensorflow as tf  # only workers that split need it

    strings = _text(keys)
    buckets = tf.strings.to_hash_bucket_fast(strings.to_numpy(zero_copy_only=False), _BUCKETS).numpy()
    return buckets < round(fraction * _BUCKETS)


class _SplitFn(beam.DoFn):
    def __init__(self, columns: tuple[str, ...], fraction: float, from_split: str):
        self.columns, self.fraction = columns, fraction
        self.moved = Metrics.counter(COUNTER_NAMESPACE, counter_name(from_split, "split_out_rows"))
        self.eval_rows = Metrics.counter(COUNTER_NAMESPACE, counter_name(EVAL, "input_rows"))

    def process(self, batch: pa.RecordBatch):
        mask = eval_mask(row_keys(batch, self.columns), self.fraction)
        n = int(mask.sum())
        if n:
            self.moved.inc(n)
            self.eval_rows.inc(n)
            yield beam.pvalue.TaggedOutput(EVAL, batch.filter(pa.array(mask)))
        if n < batch.num_rows:
            yield batch.filter(pa.array(~mask))


class HashSplit(beam.PTransform):
    """Clean batches of ``from_split`` -> (kept batches, eval batches) by the hash of ``row_keys``.

    ``key``: one column name, or the columns whose values together are the key (the features: a split by row).
    """

    def __init__(self, key: str | tuple[str, ...], fraction: float, from_split: str = "train"):
        super().__init__()
        self.columns = (key,) if isinstance(key, str) else tuple(key)
        self.fraction, self.from_split = fraction, from_split

    def expand(self, batches):
        split = _SplitFn(self.columns, self.fraction, self.from_split)
        out = batches | beam.ParDo(split).with_outputs(EVAL, main="kept")
        return out.kept, out[EVAL]

"""A deterministic train/eval split of one input on a key column.

A row goes to eval when FarmHash Fingerprint64 of its key's string value
(TensorFlow's ``to_hash_bucket_fast``; a missing key is ``""``) modulo 10^9
is below ``fraction`` * 10^9. So the same key lands in the same split in
every run, on every runner and worker, whatever the batching; Python's
``hash()`` is salted per process and would not. Rows sharing a key (a user,
a session) stay together, which keeps eval honest.

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

_BUCKETS = 1_000_000_000
EVAL = "eval"


def eval_mask(keys: pa.Array, fraction: float) -> np.ndarray:
    """True for the rows whose key falls in the eval fraction."""
    import tensorflow as tf  # only workers that split need it

    strings = pc.fill_null(keys if pa.types.is_string(keys.type) else pc.cast(keys, pa.string()), "")
    buckets = tf.strings.to_hash_bucket_fast(strings.to_numpy(zero_copy_only=False), _BUCKETS).numpy()
    return buckets < round(fraction * _BUCKETS)


class _SplitFn(beam.DoFn):
    def __init__(self, key: str, fraction: float, from_split: str):
        self.key, self.fraction = key, fraction
        self.moved = Metrics.counter(COUNTER_NAMESPACE, counter_name(from_split, "split_out_rows"))
        self.eval_rows = Metrics.counter(COUNTER_NAMESPACE, counter_name(EVAL, "input_rows"))

    def process(self, batch: pa.RecordBatch):
        mask = eval_mask(batch.column(self.key), self.fraction)
        n = int(mask.sum())
        if n:
            self.moved.inc(n)
            self.eval_rows.inc(n)
            yield beam.pvalue.TaggedOutput(EVAL, batch.filter(pa.array(mask)))
        if n < batch.num_rows:
            yield batch.filter(pa.array(~mask))


class HashSplit(beam.PTransform):
    """Clean batches of ``from_split`` -> (kept batches, eval batches) by the key's hash."""

    def __init__(self, key: str, fraction: float, from_split: str = "train"):
        super().__init__()
        self.key, self.fraction, self.from_split = key, fraction, from_split

    def expand(self, batches):
        out = batches | beam.ParDo(_SplitFn(self.key, self.fraction, self.from_split)).with_outputs(EVAL, main="kept")
        return out.kept, out[EVAL]

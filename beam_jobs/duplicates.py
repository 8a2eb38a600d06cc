"""Counting rows whose id was already seen, for the score job's manifest.

Scores are keyed by the schema's id columns; a daily table that repeats an
id gives two scores for one key, which a downstream join would double. The
job does not drop them (they are real input rows) but counts them:
``duplicate_id_rows`` = rows - distinct ids. Ids are hashed per batch
(pandas' 64-bit hash of the id columns) and the hashes combined as sorted
unique arrays, 8 bytes per distinct id; no row becomes a Python object.
"""
from __future__ import annotations

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa


def id_hashes(batch: pa.RecordBatch, id_columns: tuple[str, ...]) -> np.ndarray:
    """64-bit hashes of the id columns of each row (nulls hash alike)."""
    frame = pa.Table.from_batches([batch.select(list(id_columns))]).to_pandas()
    return pd.util.hash_pandas_object(frame, index=False).to_numpy(np.uint64)


class _CountDuplicates(beam.CombineFn):
    """(rows, sorted unique hashes) accumulators -> rows - distinct."""

    def create_accumulator(self):
        return 0, np.zeros(0, np.uint64)

    def add_input(self, acc, hashes: np.ndarray):
        rows, seen = acc
        return rows + len(hashes), np.union1d(seen, hashes)

    def merge_accumulators(self, accs):
        accs = list(accs)
        return sum(a[0] for a in accs), np.unique(np.concatenate([a[1] for a in accs]))

    def extract_output(self, acc) -> int:
        rows, seen = acc
        return int(rows - len(seen))


class CountDuplicateIds(beam.PTransform):
    """Clean RecordBatches -> one int: rows whose id columns repeat an earlier row's."""

    def __init__(self, id_columns: tuple[str, ...]):
        super().__init__()
        self.id_columns = tuple(id_columns)

    def expand(self, batches):
        return (batches
                | "HashIds" >> beam.Map(id_hashes, self.id_columns)
                | "Count" >> beam.CombineGlobally(_CountDuplicates()))

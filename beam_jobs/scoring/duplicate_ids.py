"""Counting rows whose id was already seen, for the score job's manifest.

Scores are keyed by the schema's id columns; a daily table that repeats an
id gives two scores for one key, which a downstream join would double. The
job does not drop them (they are real input rows) but counts them:
``duplicate_id_rows`` = rows - distinct ids. Ids are hashed per batch
(pandas' 64-bit hash of the id columns) and the hashes combined as numpy
arrays, about 8 bytes per distinct id; no row becomes a Python object.
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
    """Accumulator: (rows, hash arrays, rows at the last compaction); output rows - distinct.

    Arrays are only appended; they are compacted to their unique values when
    they have doubled since the last compaction, so a day of many batches costs
    a few sorts, not one per batch.
    """

    def create_accumulator(self):
        return 0, [], 0

    def add_input(self, acc, hashes: np.ndarray):
        rows, parts, compacted = acc
        return self._maybe_compact(rows + len(hashes), parts + [hashes], compacted)

    def merge_accumulators(self, accs):
        rows, parts = 0, []
        for r, p, _ in accs:
            rows, parts = rows + r, parts + p
        return self._maybe_compact(rows, parts, 0)

    @staticmethod
    def _maybe_compact(rows: int, parts: list, compacted: int):
        held = sum(len(p) for p in parts)
        if held > max(1 << 20, 2 * compacted):
            unique = np.unique(np.concatenate(parts))
            return rows, [unique], len(unique)
        return rows, parts, compacted

    def extract_output(self, acc) -> int:
        rows, parts, _ = acc
        distinct = len(np.unique(np.concatenate(parts))) if parts else 0
        return int(rows - distinct)


class CountDuplicateIds(beam.PTransform):
    """Clean RecordBatches -> one int: rows whose id columns repeat an earlier row's."""

    def __init__(self, id_columns: tuple[str, ...]):
        super().__init__()
        self.id_columns = tuple(id_columns)

    def expand(self, batches):
        return (batches
                | "HashIds" >> beam.Map(id_hashes, self.id_columns)
                | "Count" >> beam.CombineGlobally(_CountDuplicates()))

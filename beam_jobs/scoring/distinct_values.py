"""Scoring a batch by transforming each column's distinct values once, then the compiled model on every row.

Where every transformed feature reads one raw column (``pipeline.column_sources``),
the transform of a row is the transform of each of its values, so a batch
needs the transform only on each column's distinct values: Arrow's hash
kernel dictionary-encodes every column (about 20 ns a value), the saved
``transform`` runs once on the distinct values (the columns' dictionaries
side by side, each padded to the longest by repeating its first value), and
NumPy gathers each feature's rows by the column's indices. The model part then
runs as the export's XLA-compiled ``score_features`` on fixed-size slices
(the last one padded), so it compiles once per process.

Why: in the scoring benchmark's model, looking up 26 string columns in their
vocabularies and converting the strings to tensors was most of the model
call's CPU, while a 65,536-row batch of the benchmark day holds a small
share of distinct values in every column. Scores
equal ``score_and_ids``' within float32 rounding of the compiled model
(ids identical); tests check both against it.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ctrflow.beam_jobs.scoring.arrow_tensors import (
    PackedBatch,
    SignatureColumns,
    _string_array,
    missing_values_batch,
    numpy_dtypes,
    padded_rows,
)
from ctrflow.common.compat.tensorflow import flat_caller
from ctrflow.pipeline.column_sources import column_sources

FEATURES_SIGNATURE = "score_features"


def _dictionary(col: pa.Array | pa.ChunkedArray, numpy_dtype: Any | None) -> tuple[pa.Array, np.ndarray]:
    """A column's distinct values and each row's index into them (strings: nulls as "", as the transform takes)."""
    if numpy_dtype is None:
        col, _ = _string_array(col)
    else:
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        if col.type.to_pandas_dtype() != numpy_dtype or col.null_count:
            col = pa.array(col.to_numpy(zero_copy_only=False).astype(numpy_dtype, copy=False))
    encoded = pc.dictionary_encode(col)
    return encoded.dictionary, encoded.indices.to_numpy(zero_copy_only=False)


def _padded(values: pa.Array, rows: int) -> pa.Array:
    """``values`` repeated from its first element up to ``rows`` (a transform input of the common length)."""
    if len(values) == rows:
        return values
    return values.take(pa.array(np.concatenate([np.arange(len(values)), np.zeros(rows - len(values), np.int64)])))


@dataclasses.dataclass(frozen=True)
class UniqueValueScorer:
    """Scores RecordBatches through ``transform`` on distinct values + the compiled ``score_features``."""

    transform: Any  # the SavedModel's ``transform`` function: typed raw features -> transformed features
    score_features: Callable[[Sequence[np.ndarray]], dict]  # its flat call (``compat.tensorflow.flat_caller``)
    feature_order: tuple[str, ...]  # the model inputs in the order ``score_features`` takes them
    feature_dtypes: tuple[Any, ...]  # their NumPy dtypes, in that order
    raw: SignatureColumns  # the transform's inputs, grouped for packing
    numpy_dtypes: Mapping[str, Any]  # raw column -> NumPy dtype (None: string)
    feature_columns: Mapping[str, str]  # model input -> the raw column it is computed from
    id_names: tuple[str, ...]  # the ids returned beside the score (the drift profile's)
    rows_per_call: int

    # what the scorer calls, for loading only those (``artifact.load_parts``)
    PARTS = ("root.transform", f"root.signatures.{FEATURES_SIGNATURE}")

    @staticmethod
    def fits(schema) -> bool:
        """Whether the schema allows the path: every transformed feature reads one raw column (known before a load)."""
        return column_sources(schema) is not None

    @classmethod
    def create(cls, model, rows_per_call: int) -> "UniqueValueScorer | None":
        """The scorer for a loaded ``ExportedModel``, or None when its export or schema does not allow it."""
        signatures = model.loaded.signatures
        sources = column_sources(model.meta.schema)
        transform = getattr(model.loaded, "transform", None)
        raw_specs = (getattr(transform, "input_signature", None) or [None])[0]
        if (sources is None or rows_per_call <= 0 or FEATURES_SIGNATURE not in signatures
                or not isinstance(raw_specs, dict)):
            return None
        features = signatures[FEATURES_SIGNATURE]
        names = list(features.structured_input_signature[1])
        if any(sources.get(n) not in raw_specs for n in names):
            return None
        order, call = flat_caller(features)
        feature_specs = features.structured_input_signature[1]
        return cls(transform, call, order, tuple(feature_specs[n].dtype.as_numpy_dtype for n in order),
                   SignatureColumns.from_specs(raw_specs), numpy_dtypes(raw_specs),
                   {n: sources[n] for n in names},
                   tuple(f.name for f in model.meta.layout.sparse if not f.wide_only), rows_per_call)

    def features(self, batch: pa.RecordBatch) -> dict[str, np.ndarray]:
        """Every model input of every row: the transform of each column's distinct values, gathered by row."""
        encoded = {name: _dictionary(batch.column(name), dtype) for name, dtype in self.numpy_dtypes.items()}
        distinct = max(len(values) for values, _ in encoded.values())
        table = pa.table({name: _padded(values, distinct) for name, (values, _) in encoded.items()})
        transformed = self.transform(PackedBatch.pack(table, self.raw).tensors())
        return {name: np.take(transformed[name].numpy(), encoded[column][1])
                for name, column in self.feature_columns.items()}

    def warm(self) -> None:
        """Both functions' first calls at once: the transform's and the XLA compile of ``score_features``
        (each a large part of the warm-up) release the GIL, so the compile runs on zeros in a second thread
        while a one-row batch of missing values goes through the transform; the model is then ready that
        much sooner."""
        zeros = [np.zeros(self.rows_per_call, dtype) for dtype in self.feature_dtypes]
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ctrflow-compile") as pool:
            compiled = pool.submit(self.score_features, zeros)
            self(missing_values_batch(self.numpy_dtypes))
            compiled.result()

    def __call__(self, batch: pa.RecordBatch) -> dict[str, np.ndarray]:
        """``{"score": [rows], id name: [rows]}`` for one batch, as ``score_and_ids`` returns them."""
        n = batch.num_rows
        if n == 0:
            return {"score": np.zeros(0, np.float32), **{k: np.zeros(0, np.int64) for k in self.id_names}}
        features = self.features(batch)
        columns = [features[name] for name in self.feature_order]
        step = self.rows_per_call
        scores = []
        for start in range(0, n, step):
            stop = min(start + step, n)
            rows = padded_rows(start, stop, step)
            out = self.score_features([c[rows] for c in columns])
            scores.append(out["score"].numpy()[:stop - start])
        return {"score": np.concatenate(scores), **{k: features[k] for k in self.id_names}}

"""Arrow RecordBatches -> the serving signature's input tensors, without Python objects per value.

Scoring is bound by Python holding the GIL (py-spy ``--gil`` found it held
for most of a scoring job on Criteo rows), so what matters here is
the Python work per model call, not the bytes copied. ``PackedBatch`` does
the per-column work once per batch: every string column's bytes go into one
blob and their row boundaries into ``[columns, rows]`` start/length matrices,
every numeric column into one ``[columns, rows]`` matrix per dtype. A model
call on rows ``a:b`` then needs a handful of eager ops whatever the number of
columns (one ``substr`` + ``unstack`` for all strings, one constant +
``unstack`` per numeric dtype). On the scoring benchmark's 39 columns that
took a fraction of the conversion time of the per-column version (which cut
each slice out of every column and copied the column's whole buffer for each
slice).

The blob becomes a tensor through a 0-d object array: ``tf.constant`` of a
large ``bytes`` object is slow (TensorFlow scans it as a NumPy ``S``
scalar), of the object array it is not.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ctrflow.common.compat.tensorflow import serving_runtime

# Rows per model call when scoring: the intermediate tensors of a smaller call stay in cache. With
# benchmarks/score.py's model, 8192-row calls used the least CPU per row of the sizes tried (2048 to 65536).
INFERENCE_BATCH_ROWS = 8192


def _string_array(col: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, type]:
    """One chunk, nulls as "", string/binary type; with its offsets' NumPy type."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if col.null_count:
        col = pc.fill_null(col, "")
    if pa.types.is_large_string(col.type) or pa.types.is_large_binary(col.type):
        return col, np.int64
    if pa.types.is_string(col.type) or pa.types.is_binary(col.type):
        return col, np.int32
    return pc.cast(col, pa.string()), np.int32


def _offsets(col: pa.Array, offset_type: type) -> np.ndarray:
    """The ``n + 1`` value offsets of a string array (zero-copy view), honouring a slice's offset."""
    return np.frombuffer(col.buffers()[1], dtype=offset_type)[col.offset:col.offset + len(col) + 1]


def _bytes_tensor(blob: bytes):
    """A scalar ``tf.string`` holding ``blob``; see the module docstring for why through an object array."""
    holder = np.empty((), dtype=object)
    holder[()] = blob
    return serving_runtime().constant(holder)


@dataclasses.dataclass(frozen=True)
class SignatureColumns:
    """A signature's inputs grouped for packing: the string names, then the numeric names per dtype."""

    strings: tuple[str, ...]
    numeric: tuple[tuple[Any, tuple[str, ...]], ...]  # (tf dtype, names)

    @classmethod
    def from_specs(cls, specs: Mapping[str, Any]) -> "SignatureColumns":
        string = serving_runtime().string
        groups: dict[Any, list[str]] = {}
        for name, spec in specs.items():
            if spec.dtype != string:
                groups.setdefault(spec.dtype, []).append(name)
        return cls(tuple(n for n, s in specs.items() if s.dtype == string),
                   tuple((d, tuple(names)) for d, names in groups.items()))


def numpy_dtypes(specs: Mapping[str, Any]) -> dict[str, Any]:
    """Each signature input's NumPy dtype, None for a string input (how a batch for it is built or encoded)."""
    string = serving_runtime().string
    return {name: None if spec.dtype == string else spec.dtype.as_numpy_dtype for name, spec in specs.items()}


def missing_values_batch(dtypes: Mapping[str, Any]) -> pa.RecordBatch:
    """One row with every column missing, typed as ``numpy_dtypes`` gives them: a warm-up call's input."""
    return pa.record_batch({n: pa.array([None], pa.string() if d is None else pa.float32()) for n, d in dtypes.items()})


@dataclasses.dataclass(frozen=True)
class PackedBatch:
    """One RecordBatch's signature inputs: string bytes in one blob, every column a row of a matrix."""

    columns: SignatureColumns
    blob: Any  # scalar tf.string
    starts: np.ndarray  # int64 [strings, rows]: where each value starts in the blob
    lengths: np.ndarray  # int64 [strings, rows]
    numeric: tuple[np.ndarray, ...]  # one [names, rows] matrix per dtype of ``columns.numeric``
    num_rows: int

    @classmethod
    def pack(cls, batch: pa.RecordBatch | pa.Table, columns: SignatureColumns) -> "PackedBatch":
        n = batch.num_rows
        starts = np.empty((len(columns.strings), n), np.int64)
        lengths = np.empty((len(columns.strings), n), np.int64)
        pieces: list[memoryview] = []
        base = 0
        for i, name in enumerate(columns.strings):
            col, offset_type = _string_array(batch.column(name))
            offsets = _offsets(col, offset_type)
            first, last = (int(offsets[0]), int(offsets[-1])) if n else (0, 0)
            data = col.buffers()[2]
            if data is not None and last > first:
                pieces.append(memoryview(data)[first:last])
            np.subtract(offsets[:-1], first - base, out=starts[i], casting="unsafe")
            np.subtract(offsets[1:], offsets[:-1], out=lengths[i], casting="unsafe")
            base += last - first
        numeric = tuple(
            np.stack([batch.column(name).to_numpy(zero_copy_only=False).astype(dtype.as_numpy_dtype, copy=False)
                      for name in names])
            for dtype, names in columns.numeric)
        return cls(columns, _bytes_tensor(b"".join(pieces)), starts, lengths, numeric, n)

    def tensors(self, start: int = 0, stop: int | None = None, pad_to: int = 0) -> dict[str, Any]:
        """The signature's keyword inputs for rows ``start:stop``, repeating row ``start`` up to ``pad_to`` rows.

        Padding keeps every call of an XLA-compiled signature at one shape
        (one compile per process); the caller drops the padded rows' outputs.
        """
        tf = serving_runtime()
        rows = padded_rows(start, self.num_rows if stop is None else stop, pad_to)
        out: dict[str, Any] = {}
        if self.columns.strings:
            values = tf.substr(self.blob, self.starts[:, rows], self.lengths[:, rows])
            out.update(zip(self.columns.strings, tf.unstack(values, num=len(self.columns.strings))))
        for (dtype, names), matrix in zip(self.columns.numeric, self.numeric):
            out.update(zip(names, tf.unstack(tf.constant(matrix[:, rows], dtype), num=len(names))))
        return out


def padded_rows(start: int, stop: int, pad_to: int) -> slice | np.ndarray:
    """Rows ``start:stop``, then row ``start`` repeated up to ``pad_to`` rows (a compiled call's fixed shape)."""
    if pad_to <= stop - start:
        return slice(start, stop)
    return np.concatenate([np.arange(start, stop), np.full(pad_to - (stop - start), start)])


def batch_to_tensors(batch: pa.RecordBatch | pa.Table, specs: Mapping[str, Any]) -> dict[str, Any]:
    """Clean Arrow columns -> the signature's input tensors (all rows in one call)."""
    return PackedBatch.pack(batch, SignatureColumns.from_specs(specs)).tensors()


def slices(num_rows: int, step: int) -> Sequence[tuple[int, int]]:
    """``(start, stop)`` of each model call: ``step`` rows at a time, or all rows when ``step`` is 0."""
    if not step or num_rows <= step:
        return [(0, num_rows)]
    return [(i, min(i + step, num_rows)) for i in range(0, num_rows, step)]

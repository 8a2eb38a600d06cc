"""The Beam coders of ctrflow's elements, registered here and only here.

``beam_jobs.input.transforms`` (every job's reading code) and the model handler import this
module, so the registration never depends on which module a job happened to
import first. Arrow batches and tables and RunInference's ``PredictionResult``
pickle like Beam's fallback coder, but report their size without encoding:
Beam samples the byte size of the first elements of every PCollection through
its coder, and the fallback coder pickles each (large) Arrow batch once more
just to measure it.
"""
from __future__ import annotations

import pickle

import apache_beam as beam
import pyarrow as pa
from apache_beam.ml.inference.base import PredictionResult


class _SizedPickleCoder(beam.coders.Coder):
    """Pickles like Beam's fallback coder, but estimates sizes without encoding."""

    def encode(self, value) -> bytes:
        return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes):
        return pickle.loads(encoded)

    def is_deterministic(self) -> bool:
        return False

    def estimate_size(self, value) -> int:
        return _nbytes(value)

    def __eq__(self, other):
        return type(self) is type(other)

    def __hash__(self):
        return hash(type(self))


class ArrowBatchCoder(_SizedPickleCoder):
    def to_type_hint(self):
        return pa.RecordBatch


class ArrowTableCoder(_SizedPickleCoder):
    def to_type_hint(self):
        return pa.Table


class PredictionResultCoder(_SizedPickleCoder):
    def to_type_hint(self):
        return PredictionResult


def _nbytes(value) -> int:
    if isinstance(value, (pa.RecordBatch, pa.Table)):
        return value.nbytes
    if isinstance(value, PredictionResult):
        return _nbytes(value.example) + sum(getattr(v, "nbytes", 8) for v in value.inference.values())
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    return getattr(value, "nbytes", 64)


beam.coders.registry.register_coder(pa.RecordBatch, ArrowBatchCoder)
beam.coders.registry.register_coder(pa.Table, ArrowTableCoder)
beam.coders.registry.register_coder(PredictionResult, PredictionResultCoder)

"""The numpy tf.Example encoder against tfx_bsl's, record by record, read back through TensorFlow's reader."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf
from tfx_bsl.coders import example_coder

from ctrflow.beam_jobs.outputs.tfrecord_encoding import encode_tfrecords, frame_records

# every varint length from 1 to 10 bytes, both sides of each boundary, and negatives (10 bytes)
EDGES = [0, 1, 127, 128, 16383, 16384, 2**21 - 1, 2**21, 2**28, 2**35, 2**42, 2**49, 2**56 - 1, 2**56, 2**63 - 1,
         -1, -2**63, -12345]


def _read(path: str) -> list[bytes]:
    """Records through TensorFlow's reader, which checks every length and data crc."""
    return [r.numpy() for r in tf.data.TFRecordDataset(path)]


def _canonical(record: bytes) -> bytes:
    # deterministic serialization sorts the feature map, whose order protobuf leaves open; NaN-safe unlike ==
    return tf.train.Example.FromString(record).SerializeToString(deterministic=True)


def _assert_same_examples(batch: pa.RecordBatch, tmp_path) -> list[bytes]:
    chunks = encode_tfrecords(batch)
    assert chunks is not None
    path = str(tmp_path / "ours.tfrecord")
    with open(path, "wb") as f:
        for chunk in chunks:
            f.write(chunk.tobytes())
    ours = _read(path)
    theirs = example_coder.RecordBatchToExamples(batch)
    assert len(ours) == len(theirs) == batch.num_rows
    assert [_canonical(r) for r in ours] == [_canonical(r) for r in theirs]
    assert sorted(map(len, ours)) == sorted(map(len, theirs))  # canonical varints: not one byte more
    return ours


def _one_per_row(values: np.ndarray, kind=pa.large_list) -> pa.Array:
    offsets = np.arange(len(values) + 1, dtype=np.int64 if kind is pa.large_list else np.int32)
    cls = pa.LargeListArray if kind is pa.large_list else pa.ListArray
    return cls.from_arrays(pa.array(offsets), pa.array(values))


def test_ids_of_every_varint_length_and_floats_equal_tfx_bsl(tmp_path):
    rng = np.random.default_rng(0)
    n = 5000  # three chunks, the last one partial
    mixed = rng.choice(np.array(EDGES, np.int64), n)
    small = rng.integers(0, 100, n)  # one varint length in every chunk
    floats = rng.normal(size=n).astype(np.float32)
    floats[:6] = [np.nan, np.inf, -np.inf, -0.0, 0.0, np.finfo(np.float32).max]
    batch = pa.RecordBatch.from_arrays(
        [_one_per_row(mixed), _one_per_row(small, pa.list_), _one_per_row(floats), _one_per_row(small[::-1].copy()),
         _one_per_row(rng.integers(0, 2**40, n))],
        ["ids", "bucket", "a_somewhat_longer_feature_name__position", "plain", "x"])
    _assert_same_examples(batch, tmp_path)


def test_a_row_longer_than_16k_bytes_and_a_single_row(tmp_path):
    names = [f"f{i:04d}" for i in range(900)]  # 900 * 20 bytes: a 3-byte length varint for each record
    cols = [_one_per_row(np.full(3, i, np.float32)) for i in range(900)]
    records = _assert_same_examples(pa.RecordBatch.from_arrays(cols, names), tmp_path)
    assert min(map(len, records)) > 16384
    _assert_same_examples(pa.RecordBatch.from_arrays([_one_per_row(np.array([7], np.int64))], ["a"]), tmp_path)


@pytest.mark.parametrize("column", [
    pa.LargeListArray.from_arrays(pa.array([0, 1, 3], pa.int64()), pa.array([1, 2, 3], pa.int64())),  # ragged
    pa.LargeListArray.from_arrays(pa.array([0, 1, 2], pa.int64()), pa.array([b"a", b"b"])),  # strings
    pa.array([[1], None], pa.large_list(pa.int64())),  # a null row
    pa.LargeListArray.from_arrays(pa.array([0, 1, 2], pa.int64()), pa.array([1.0, 2.0], pa.float64())),  # float64
    pa.array([1, 2], pa.int64()),  # not a list: tfx_bsl's error
])
def test_anything_but_one_int64_or_float32_per_row_goes_to_tfx_bsl(column):
    assert encode_tfrecords(pa.RecordBatch.from_arrays([column], ["c"])) is None


def test_frame_records_is_what_tensorflow_reads(tmp_path):
    records = [b"", b"x", bytes(range(256)) * 40]
    path = str(tmp_path / "framed.tfrecord")
    with open(path, "wb") as f:
        f.write(frame_records(records))
    assert _read(path) == records

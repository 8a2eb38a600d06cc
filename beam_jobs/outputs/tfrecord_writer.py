"""TFRecords: writing gzip shards a whole batch at a time, and reading tf.Examples back as Arrow.

``beam.io.WriteToTFRecord`` takes one Beam element per record and compresses
each one with its own ``zlib`` call: on a million rows that per-record work
dominates the preprocess job. ``WriteTFRecordBatches`` turns each Arrow batch
into ONE element: its tf.Examples (written with numpy by ``tfrecord_encoding``,
or encoded by tfx_bsl when a feature is ragged or a string), framed, and
compressed with one call into a complete gzip member (level 1: readers do not
care, and it is several times faster than the default 6). The deflate is
ISA-L's (``isal``) where installed: on these records it compresses several
times faster than zlib at level 1, into slightly more bytes, which shortens
the preprocess job. Compressing before Beam's write step also means the
runner moves far fewer bytes. A gzip file may hold many members, which TF's reader reads in turn;
Beam's file sink still does sharding, temp files and the atomic rename.
"""
from __future__ import annotations

import collections
import concurrent.futures
import zlib

import apache_beam as beam
import pyarrow as pa
from apache_beam.coders import coders
from apache_beam.io.filebasedsink import FileBasedSink
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.utils.windowed_value import WindowedValue
from tfx_bsl.coders import example_coder

from ctrflow.beam_jobs.outputs.tfrecord_encoding import encode_tfrecords, frame_records
from ctrflow.pipeline import artifacts as af

try:  # ISA-L's deflate: the same gzip format, several times zlib's speed (see the module docstring)
    from isal import isal_zlib as _deflate
except ImportError:  # a platform without isal's wheel (setup.py installs it on x86-64 and ARM64)
    _deflate = zlib

_GZIP_WBITS = 31  # zlib wbits for a gzip container
RAGGED_VALUES_SUFFIX = "$ragged_values"  # TFT's tf.io.RaggedFeature value_key for a ragged output


class _RawSink(FileBasedSink):
    """A file sink whose records are written as they are (here: whole gzip members)."""

    def __init__(self, file_path_prefix: str, file_name_suffix: str, num_shards: int):
        super().__init__(file_path_prefix, coder=coders.BytesCoder(), file_name_suffix=file_name_suffix,
                         num_shards=num_shards, compression_type=CompressionTypes.UNCOMPRESSED)

    def write_encoded_record(self, file_handle, encoded_value: bytes) -> None:
        file_handle.write(encoded_value)


class WriteTFRecordBatches(beam.PTransform):
    """Arrow RecordBatches -> gzip TFRecord files of tf.Examples ``<prefix>-SSSSS-of-NNNNN<suffix>``.

    ``ragged``: columns holding TFT ragged outputs; they are written under
    the key TFT's transformed feature spec reads them from.
    """

    def __init__(self, file_path_prefix: str, file_name_suffix: str = af.TFRECORD_SUFFIX, num_shards: int = 0,
                 level: int = 1, ragged: tuple[str, ...] = ()):
        super().__init__()
        self.sink = _RawSink(file_path_prefix, file_name_suffix, num_shards)
        self.ragged, self.level = tuple(ragged), level

    def expand(self, batches):
        return (batches
                | "Encode" >> beam.ParDo(_EncodeBatches(self.ragged, self.level)).with_output_types(bytes)
                | "Write" >> beam.io.Write(self.sink))


class _EncodeBatches(beam.DoFn):
    """Each batch -> one gzip member of framed tf.Examples, encoded and compressed in background threads.

    zlib and most of numpy's work release the GIL, so while the pipeline's own
    thread reads, parses and transforms the next batches, earlier ones are
    encoded and compressed beside it: on a 2-core Criteo preprocess, one
    encode thread was faster than none, and two with the reads prefetched
    (``ReadRows(prefetch=True)``) faster still. At most ``_AHEAD`` batches
    wait, so memory stays bounded; the output keeps the input's order, and
    ``finish_bundle`` emits what is left.
    """

    _AHEAD = 3

    def __init__(self, ragged: tuple[str, ...], level: int):
        self.ragged, self.level = ragged, level

    def setup(self):
        self._pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="encode")

    def start_bundle(self):
        self._pending: collections.deque = collections.deque()

    def process(self, batch: pa.RecordBatch, timestamp=beam.DoFn.TimestampParam, window=beam.DoFn.WindowParam):
        self._pending.append((self._pool.submit(gzip_member, batch, self.ragged, self.level), timestamp, window))
        while self._pending and (len(self._pending) > self._AHEAD or self._pending[0][0].done()):
            yield self._pending.popleft()[0].result()

    def finish_bundle(self):
        while self._pending:
            future, timestamp, window = self._pending.popleft()
            yield WindowedValue(future.result(), timestamp, [window])

    def teardown(self):
        self._pool.shutdown()


def gzip_member(batch: pa.RecordBatch, ragged: tuple[str, ...] = (), level: int = 1) -> bytes:
    """A batch as one gzip member of framed tf.Examples (``tfrecord_encoding``, else tfx_bsl's encoder)."""
    if ragged:
        names = [n + RAGGED_VALUES_SUFFIX if n in ragged else n for n in batch.schema.names]
        batch = pa.RecordBatch.from_arrays(batch.columns, names)
    compressor = _deflate.compressobj(level, _deflate.DEFLATED, _GZIP_WBITS)
    framed = encode_tfrecords(batch)
    if framed is None:  # ragged or string features: tfx_bsl encodes them
        framed = [frame_records(example_coder.RecordBatchToExamples(batch))]
    return b"".join([compressor.compress(chunk) for chunk in framed] + [compressor.flush()])


# ---------------------------------------------------------------- reading

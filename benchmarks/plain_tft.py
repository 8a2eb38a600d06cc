"""The baseline: the plain tf.Transform pipeline users write for Criteo.

Written the way TFT's ``census_example_v2`` is: ``CsvTFXIO`` in, one
``tft.bucketize`` per numeric column (after a signed log1p) and one
``tft.compute_and_apply_vocabulary`` per categorical column,
``AnalyzeAndTransformDataset``, tf.Examples out through ``WriteToTFRecord``
(gzip). Same transforms and vocabulary rules as ``schemas/criteo.yaml``, so
``benchmarks/preprocess.py`` compares like with like.

    python benchmarks/plain_tft.py --input /tmp/criteo_1m.txt --output /tmp/plain
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import apache_beam as beam
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tfx_bsl.coders.example_coder import RecordBatchToExamples
from tfx_bsl.public import tfxio

LABEL = "label"
NUMERIC = [f"I{i}" for i in range(1, 14)]
CATEGORICAL = [f"C{i}" for i in range(1, 27)]
COLUMNS = [LABEL] + NUMERIC + CATEGORICAL


def feature_spec() -> dict:
    """Empty Criteo fields are missing, so every feature is a VarLenFeature (as in census_example_v2)."""
    spec = {LABEL: tf.io.FixedLenFeature([], tf.int64)}
    spec.update({c: tf.io.VarLenFeature(tf.float32) for c in NUMERIC})
    spec.update({c: tf.io.VarLenFeature(tf.string) for c in CATEGORICAL})
    return spec


def _dense(x: tf.SparseTensor, default) -> tf.Tensor:
    return tf.squeeze(tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default), 1)


def preprocessing_fn(inputs: dict) -> dict:
    outputs = {}
    for c in NUMERIC:
        x = _dense(inputs[c], 0.0)
        outputs[c] = tft.bucketize(tf.sign(x) * tf.math.log1p(tf.abs(x)), num_buckets=20)
    for c in CATEGORICAL:
        outputs[c] = tft.compute_and_apply_vocabulary(_dense(inputs[c], "__missing__"), frequency_threshold=10,
                                                      num_oov_buckets=1, vocab_filename=f"vocab_{c}")
    outputs[LABEL] = tf.cast(inputs[LABEL], tf.float32)
    return outputs


def run(input_pattern: str, output: str) -> float:
    """Runs the pipeline; returns its wall seconds."""
    start = time.time()
    schema = tft.DatasetMetadata.from_feature_spec(feature_spec()).schema
    csv = tfxio.CsvTFXIO(file_pattern=input_pattern, column_names=COLUMNS, schema=schema, delimiter="\t",
                         telemetry_descriptors=["plain_tft"])
    with beam.Pipeline() as p, tft_beam.Context(temp_dir=tempfile.mkdtemp(prefix="plain-tft-")):
        raw = p | "Read" >> csv.BeamSource()
        (data, _), transform_fn = ((raw, csv.TensorAdapterConfig())
                                   | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn, output_record_batches=True))
        _ = (data
             | "Encode" >> beam.FlatMapTuple(lambda batch, _: RecordBatchToExamples(batch))
             | "Write" >> beam.io.WriteToTFRecord(os.path.join(output, "train"), file_name_suffix=".gz"))
        _ = transform_fn | tft_beam.WriteTransformFn(os.path.join(output, "transform_fn"))
    return time.time() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="Criteo TSV file pattern (benchmarks/criteo_gen.py)")
    p.add_argument("--output", required=True)
    args = p.parse_args()
    print(f"plain tf.Transform pipeline: {run(args.input, args.output):.1f}s")


if __name__ == "__main__":
    main()

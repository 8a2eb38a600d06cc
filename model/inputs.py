"""tf.data input from the preprocess job's TFRecords: no Python in the input path.

Files are interleaved in parallel, records shuffled, batched *before* parsing
(one vectorised ``parse_example`` per batch), and prefetched. Features come
out in the conventions of ``pipeline.layout``.
"""
from __future__ import annotations

import os

import tensorflow as tf

from pipeline.layout import FeatureLayout


def split_files(data_dir: str, split: str) -> str:
    return os.path.join(data_dir, split, "part-*.tfrecord.gz")


def model_features(transformed: dict, layout: FeatureLayout) -> dict[str, tf.Tensor]:
    """The model's inputs from transformed features (TFT output or parsed examples)."""
    features = {}
    for f in layout.sparse:
        t = transformed[f.name]
        if isinstance(t, tf.SparseTensor):
            t = tf.sparse.to_dense(t, default_value=-1)
        elif isinstance(t, tf.RaggedTensor):
            t = t.to_tensor(default_value=-1)
        features[f.name] = t
    for f in layout.dense:
        features[f.name] = transformed[f.name]
    if layout.global_index is not None:
        gi = layout.global_index
        features[gi.index_key] = transformed[gi.index_key]
        features[gi.value_key] = transformed[gi.value_key]
    return features


def _to_layout(parsed: dict[str, tf.Tensor], layout: FeatureLayout) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    return model_features(parsed, layout), parsed[layout.label]


def make_dataset(file_pattern: str, feature_spec: dict, layout: FeatureLayout, batch_size: int, *,
                 shuffle: bool, seed: int | None = None, repeat: bool = False, cache: bool = False,
                 shuffle_buffer: int = 100_000) -> tf.data.Dataset:
    """Batches of ``(features, label)`` from gzip TFRecords of transformed examples."""
    files = tf.io.gfile.glob(file_pattern)
    if not files:
        raise FileNotFoundError(f"no TFRecord files match {file_pattern}")
    ds = tf.data.Dataset.from_tensor_slices(sorted(files))
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed)
    ds = ds.interleave(lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP", buffer_size=8 << 20),
                       cycle_length=min(len(files), 8), num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=seed is not None or not shuffle)
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.map(lambda x: _to_layout(tf.io.parse_example(x, feature_spec), layout),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)

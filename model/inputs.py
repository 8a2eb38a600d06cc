"""tf.data input from the preprocess job's TFRecords: no Python in the input path.

Files are interleaved in parallel, records shuffled, batched *before* parsing
(one vectorised ``parse_example`` per batch), and prefetched; with ``cache``
records are parsed once and batches are gathered from memory. Features come
out in the conventions of ``pipeline.layout``.

Two training-only variants, both driven by a per-record uniform number drawn
from ``tf.data.Dataset.random(seed)`` so they are reproducible:

- **Negative downsampling** (``negative_keep_rate < 1``): each negative is kept
  with that probability, positives always; batches are re-formed to full
  size. ``CTRModel.probabilities`` undoes the odds shift at serving.
- **Pairs** for the pairwise loss (``pairs=True``, needs the ``__group__`` key
  of a schema with ``pairwise: {group: col}``): the stream is cut into windows
  of ``pair_window`` consecutive records; in each window every positive is
  paired with one negative *of the same group in that window*, drawn
  uniformly with replacement (``form_pairs``). Positives whose group has no
  negative in the window are dropped, so windows must be large relative to
  how scattered a group's rows are (records are not shuffled before
  windowing: data written grouped stays grouped). Batches are
  ``{"pos": features, "neg": features}``.

**Sample weights** (a schema's ``role: weight`` column, ``FeatureLayout.weight``):
batches are ``(features, label, weight)`` instead of ``(features, label)``,
and pairs carry ``"weight"``: the *product* of the two rows' weights. A row
of weight w stands for w copies of itself, and w_pos copies of a positive
paired with w_neg copies of a negative make w_pos * w_neg pairs; a pair
with a row of weight 0 weighs nothing.
"""
from __future__ import annotations

import os

import tensorflow as tf

from ctrflow.pipeline import artifacts as af
from ctrflow.pipeline.layout import FeatureLayout

_UNIFORM_BITS = 2**24
_HASH_BUCKETS = 1_000_000_000
_HOLDOUT_BLOCK = 4096
_ENTRY_BUCKETS = 2**40  # sums of up to 2^23 entries stay below 2^63


def content_key(records: tf.Tensor) -> tf.Tensor:
    """int64 key of each serialized tf.Example's content, independent of its byte order.

    protobuf serializes a tf.Example's feature map in a per-process order (checked:
    one RecordBatch encoded by tfx_bsl in three processes gave three byte strings),
    so hashing the record bytes gives a different key each preprocess run. Here
    each map entry (name + value, whose own encoding is fixed) is hashed on its
    own with FarmHash Fingerprint64, and the entry hashes are summed, which
    does not depend on their order (``in_holdout`` hashes the sum once more). Two vectorised
    ``decode_proto`` calls, no per-feature parsing and no feature spec needed.
    Values are hashed as written, so a float that changes in its last bit
    (an analyzer computed in another order) moves its row.
    """
    flat = tf.reshape(records, [-1])
    _, (features,) = tf.io.decode_proto(flat, "tensorflow.Example", ["features"], [tf.string])
    sizes, (entries,) = tf.io.decode_proto(tf.reshape(features, [-1]), "tensorflow.Features", ["feature"],
                                           [tf.string])
    present = tf.sequence_mask(tf.reshape(sizes, [-1]), tf.shape(entries)[1])
    entry_hashes = tf.where(present, tf.strings.to_hash_bucket_fast(entries, _ENTRY_BUCKETS), 0)
    return tf.reshape(tf.reduce_sum(entry_hashes, axis=1), tf.shape(records))


def in_holdout(records: tf.Tensor, fraction: float) -> tf.Tensor:
    """True for serialized records in the validation holdout of ``fraction``.

    FarmHash Fingerprint64 of ``content_key`` (the record's content, not its
    bytes) modulo 10^9 below ``fraction`` * 10^9: the same rows in every training run and
    every preprocess run of the same input (same transform), whatever the
    sharding, batching, shuffling or feature order, so a model's validation
    rows never train it (identical records go together). The benchmarks apply
    it to split the same rows.
    """
    buckets = tf.strings.to_hash_bucket_fast(tf.strings.as_string(content_key(records)), _HASH_BUCKETS)
    return buckets < round(fraction * _HASH_BUCKETS)


def split_files(data_dir: str, split: str) -> str:
    return os.path.join(data_dir, split, af.SPLIT_FILES)


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
        if f.position is not None:
            features[f.position] = transformed[f.position]
    for f in layout.dense:
        features[f.name] = transformed[f.name]
    if layout.global_index is not None:
        gi = layout.global_index
        features[gi.index_key] = transformed[gi.index_key]
        features[gi.value_key] = transformed[gi.value_key]
    return features


def _to_layout(parsed: dict[str, tf.Tensor], layout: FeatureLayout) -> tuple:
    """``(features, label)``, or ``(features, label, weight)`` when the layout has a weight column."""
    if layout.weight is None:
        return model_features(parsed, layout), parsed[layout.label]
    return model_features(parsed, layout), parsed[layout.label], parsed[layout.weight]


def _uniform(random_int: tf.Tensor) -> tf.Tensor:
    """int64 draws of ``Dataset.random`` -> float32 uniform in [0, 1)."""
    return tf.cast(tf.math.floormod(random_int, _UNIFORM_BITS), tf.float32) / _UNIFORM_BITS


def form_pairs(group: tf.Tensor, label: tf.Tensor, u: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Indices ``(pos, neg)`` of (positive, negative) pairs within groups of one window.

    Every positive whose group has ``n >= 1`` negatives gets the
    ``floor(u[i] * n)``-th of them (in window order); ``u`` is one uniform
    draw per record. Pairs come out ordered by (group, position). A stable
    sort by (group, label) lays out each group as [negatives, positives], so
    this is a few vectorised ops, no per-group loop.
    """
    is_pos = tf.cast(tf.reshape(label, [-1]) > 0.5, tf.int32)
    group = tf.reshape(group, [-1])
    order = tf.argsort(is_pos, stable=True)
    order = tf.gather(order, tf.argsort(tf.gather(group, order), stable=True))
    g, y = tf.gather(group, order), tf.gather(is_pos, order)
    starts_group = tf.concat([[True], tf.not_equal(g[1:], g[:-1])], axis=0)
    segment = tf.cumsum(tf.cast(starts_group, tf.int32)) - 1
    segment_start = tf.gather(tf.where(starts_group)[:, 0], segment)
    negatives = tf.gather(tf.math.segment_sum(1 - y, segment), segment)
    keep = tf.logical_and(tf.equal(y, 1), negatives > 0)
    draw = tf.cast(tf.floor(tf.gather(tf.reshape(u, [-1]), order) * tf.cast(negatives, tf.float32)), tf.int64)
    neg_sorted = segment_start + tf.minimum(draw, tf.cast(negatives, tf.int64) - 1)
    pos = tf.boolean_mask(order, keep)
    neg = tf.gather(order, tf.boolean_mask(neg_sorted, keep))
    return pos, neg


def _glob(file_pattern: str) -> list[str]:
    files = tf.io.gfile.glob(file_pattern)
    if not files:
        raise FileNotFoundError(f"no TFRecord files match {file_pattern}")
    return sorted(files)


def _records(files: list[str], shuffle_files: bool, seed: int | None, deterministic: bool,
             holdout: tuple[float, bool] | None = None) -> tf.data.Dataset:
    """Serialized records; ``holdout=(fraction, inside)`` keeps only the records in (or out of) the holdout."""
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_files:
        ds = ds.shuffle(len(files), seed=seed)
    ds = ds.interleave(lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP", buffer_size=8 << 20),
                       cycle_length=min(len(files), 8), num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=deterministic)
    if holdout is not None and holdout[0] > 0:
        fraction, inside = holdout
        # decided per block of records (two vectorised decode_proto calls), not per record
        ds = ds.batch(_HOLDOUT_BLOCK).map(
            lambda r: tf.boolean_mask(r, tf.equal(in_holdout(r, fraction), inside)),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()
    return ds


def _parse_fn(feature_spec: dict, layout: FeatureLayout):
    return lambda records: _to_layout(tf.io.parse_example(records, feature_spec), layout)


def _streamed_batches(files: list[str], feature_spec: dict, layout: FeatureLayout, batch_size: int, *,
                      shuffle: bool, seed: int | None, repeat: bool, shuffle_buffer: int,
                      holdout: tuple[float, bool] | None) -> tf.data.Dataset:
    """Parsed batches read from disk on every pass: for data larger than memory."""
    ds = _records(files, shuffle, seed, deterministic=seed is not None or not shuffle, holdout=holdout)
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.map(_parse_fn(feature_spec, layout), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _memory_batches(files: list[str], feature_spec: dict, layout: FeatureLayout, batch_size: int, *,
                    shuffle: bool, seed: int | None, repeat: bool,
                    holdout: tuple[float, bool] | None) -> tf.data.Dataset:
    """Batches gathered from features parsed once into memory (``cache``).

    Parsing protos is most of the input pipeline's CPU cost, and on a small
    machine it competes with the train step; parsed columns cost ~8 bytes per
    id. Each pass shuffles the row indices fully and gathers whole batches,
    so it stays vectorised.
    """
    parsed = _records(files, False, seed, deterministic=True, holdout=holdout).batch(65_536).map(
        _parse_fn(feature_spec, layout), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    chunks = list(parsed)
    columns = tf.nest.map_structure(lambda *parts: tf.concat(parts, axis=0), *chunks)
    rows = int(columns[1].shape[0])
    return _index_batches(rows, batch_size, shuffle=shuffle, seed=seed, repeat=repeat).map(
        _row_gatherer(columns), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _row_gatherer(columns):
    """``indices -> columns`` at those rows, with one gather per dtype instead of one per feature.

    The one-value-per-row columns of a dtype are stacked once into a
    ``[rows, k]`` matrix; a batch is one gather and ``k`` column slices, which
    with Criteo's 40 columns cut the input pipeline's CPU per epoch. Wider
    columns (multivalent ids) are gathered alone.
    """
    flat = tf.nest.flatten(columns)
    groups: dict[tf.DType, list[int]] = {}
    alone = []
    for k, t in enumerate(flat):
        (groups.setdefault(t.dtype, []) if t.shape.rank == 1 else alone).append(k)
    stacked = {dtype: tf.stack([flat[k] for k in ks], axis=1) for dtype, ks in groups.items()}

    def gather(indices: tf.Tensor):
        out = [None] * len(flat)
        for dtype, ks in groups.items():
            rows = tf.gather(stacked[dtype], indices)
            for j, k in enumerate(ks):
                out[k] = rows[:, j]
        for k in alone:
            out[k] = tf.gather(flat[k], indices)
        return tf.nest.pack_sequence_as(columns, out)

    return gather


def _index_batches(rows: int, batch_size: int, *, shuffle: bool, seed: int | None, repeat: bool) -> tf.data.Dataset:
    """Row indices, one whole batch per element: each pass is one permutation cut into batches in one op.

    ``Dataset.range(rows).shuffle(rows).batch(b)`` moves every row index
    through tf.data's per-element machinery twice per pass (CPU taken from
    the cores the train step needs); this makes
    ``rows / b`` elements instead. A pass's permutation is a stateless
    shuffle seeded by ``Dataset.random(seed)``, which draws anew on every
    iteration (a new Keras epoch reshuffles) and repeats for the same seed.
    The last batch of a pass may be short, as with ``batch()``.
    """
    full = rows // batch_size

    def one_pass(draw: tf.Tensor) -> tf.data.Dataset:
        index = tf.range(rows, dtype=tf.int64)
        if shuffle:
            index = tf.random.experimental.stateless_shuffle(index, seed=tf.stack([draw, draw // 7 + 1]))
        ds = tf.data.Dataset.from_tensor_slices(tf.reshape(index[:full * batch_size], [full, batch_size]))
        if rows > full * batch_size:
            ds = ds.concatenate(tf.data.Dataset.from_tensors(index[full * batch_size:]))
        return ds

    passes = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    return (passes if repeat else passes.take(1)).flat_map(one_pass)


def make_dataset(file_pattern: str, feature_spec: dict, layout: FeatureLayout, batch_size: int, *,
                 shuffle: bool, seed: int | None = None, repeat: bool = False, cache: bool = False,
                 shuffle_buffer: int = 100_000, negative_keep_rate: float = 1.0,
                 positive_weight: float = 1.0, holdout: tuple[float, bool] | None = None) -> tf.data.Dataset:
    """Batches of ``(features, label)`` (``(features, label, weight)`` with a weight column) from gzip TFRecords
    of transformed examples.

    ``holdout=(fraction, inside)``: only the records inside (validation) or
    outside (training) the hash holdout of ``in_holdout``.
    ``cache`` parses every record once and keeps the features in memory (full
    shuffle each pass); otherwise records stream from disk through a
    ``shuffle_buffer``. ``negative_keep_rate < 1`` downsamples negatives
    (training only; see the module docstring); ``positive_weight != 1`` adds
    per-example loss weights ``(x, y, w)`` with ``w = positive_weight`` for positives (times the row's own
    weight with a weight column).
    """
    files = _glob(file_pattern)
    if cache:
        ds = _memory_batches(files, feature_spec, layout, batch_size, shuffle=shuffle, seed=seed, repeat=repeat,
                             holdout=holdout)
    else:
        ds = _streamed_batches(files, feature_spec, layout, batch_size, shuffle=shuffle, seed=seed, repeat=repeat,
                               shuffle_buffer=shuffle_buffer, holdout=holdout)
    if negative_keep_rate < 1.0:

        def downsample(batch, random_ints):
            y = batch[1]
            u = _uniform(random_ints[:tf.shape(y)[0]])
            keep = tf.logical_or(tf.reshape(y, [-1]) > 0.5, u < negative_keep_rate)
            return tf.nest.map_structure(lambda t: tf.boolean_mask(t, keep), batch)

        ds = tf.data.Dataset.zip(ds, tf.data.Dataset.random(seed=seed).batch(batch_size))
        ds = ds.map(downsample, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.unbatch().batch(batch_size)  # full batches again after the mask
    if positive_weight != 1.0:
        if layout.weight is None:
            ds = ds.map(lambda x, y: (x, y, tf.where(y > 0.5, positive_weight, 1.0)),
                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        else:
            ds = ds.map(lambda x, y, w: (x, y, tf.where(y > 0.5, positive_weight, 1.0) * w),
                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def make_pair_dataset(file_pattern: str, feature_spec: dict, layout: FeatureLayout, batch_size: int, *,
                      seed: int | None = None, repeat: bool = False, cache: bool = False,
                      pair_window: int = 65_536, holdout: tuple[float, bool] | None = None) -> tf.data.Dataset:
    """Batches of ``{"pos": features, "neg": features}`` pairs for the pairwise loss (and ``"weight"``, the
    product of the two rows' weights, with a weight column)."""
    if layout.group_key is None:
        raise ValueError("the pairwise loss needs a group key: declare `pairwise: {group: <column>}` in the "
                         "schema and preprocess again")
    ds = _records(_glob(file_pattern), shuffle_files=False, seed=seed, deterministic=True, holdout=holdout)
    if cache:
        ds = ds.cache()
    if repeat:
        ds = ds.repeat()
    spec = {**feature_spec, layout.group_key: tf.io.FixedLenFeature([], tf.int64)}

    def pairs(records, random_ints):
        parsed = tf.io.parse_example(records, spec)
        x, y = _to_layout(parsed, layout)[:2]
        pos, neg = form_pairs(parsed[layout.group_key], y, _uniform(random_ints))
        out = {"pos": tf.nest.map_structure(lambda t: tf.gather(t, pos), x),
               "neg": tf.nest.map_structure(lambda t: tf.gather(t, neg), x)}
        if layout.weight is not None:
            w = parsed[layout.weight]
            out["weight"] = tf.gather(w, pos) * tf.gather(w, neg)
        return out

    ds = tf.data.Dataset.zip(ds, tf.data.Dataset.random(seed=seed))
    ds = ds.batch(pair_window, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.map(pairs, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()
    ds = ds.shuffle(min(pair_window, 100_000), seed=seed).batch(batch_size)
    return ds.prefetch(tf.data.AUTOTUNE)


def split_weights(dataset: tf.data.Dataset):
    """The sample weights of a ``make_dataset`` dataset in its order (a numpy array), or None without weights.

    Read beside ``train.predict_split``'s labels and probabilities: an
    unshuffled dataset gives its rows in the same order on every pass.
    """
    import numpy as np

    if len(dataset.element_spec) < 3:
        return None
    parts = [w.numpy().reshape(-1) for w in dataset.map(lambda x, y, w: w)]
    return np.concatenate(parts) if parts else np.zeros(0)

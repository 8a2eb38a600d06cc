"""The DeepFM feat_index/feat_value layout of a real preprocess run against numpy."""
from __future__ import annotations

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from ctrflow.schemas import SchemaError, loads_schema
from tests.test_transforms import C_COUNTS, MISSING, make_table, raw_tensors, run_preprocess, tft_vocab

SCHEMA = """
name: global
format: {type: csv, header: true, null_markers: ["", "NA"]}
layout: {type: global_index, numeric: bucket}
columns:
  - {name: y, role: numeric, bucketize: {num_buckets: 4}, missing: bucket}
  - {name: z, role: numeric, clip: [0, 10], missing: 5.0, scale: zscore}
  - {name: c, role: categorical, vocabulary: {top_k: 5, num_oov_buckets: 3}}
  - {name: h, role: categorical, hash: {buckets: 7}}
  - {name: label, role: label, positive: ["1"]}
"""


def test_layout_option_is_validated():
    assert loads_schema(SCHEMA).global_index.numeric == "bucket"
    assert loads_schema(SCHEMA.replace("layout: {type: global_index, numeric: bucket}", "")).global_index is None
    with pytest.raises(SchemaError, match="numeric must be one of"):
        loads_schema(SCHEMA.replace("numeric: bucket", "numeric: both"))
    multi = SCHEMA.replace("hash: {buckets: 7}", 'hash: {buckets: 7}, multivalent: {delimiter: "|"}')
    with pytest.raises(SchemaError, match="multivalent"):
        loads_schema(multi)
    crossed = multi.replace("layout: {type: global_index, numeric: bucket}",
                            "crosses: [{columns: [c, h], hash_buckets: 5}]")
    with pytest.raises(SchemaError, match="only single-valued columns can be crossed"):
        loads_schema(crossed)


@pytest.mark.slow
def test_feat_index_and_feat_value_match_numpy(tmp_path):
    import tensorflow_transform as tft

    from ctrflow.pipeline.layout import FeatureLayout

    df = make_table()
    data = run_preprocess(tmp_path, SCHEMA, df)
    tft_out = tft.TFTransformOutput(data)
    c_tokens = df["c"].fillna(MISSING).to_numpy(object).astype(str)
    vocab = tft_vocab(df["c"].fillna(MISSING).value_counts(), top_k=5)
    assert vocab == [t for t, _ in sorted(C_COUNTS.items(), key=lambda p: (p[1], p[0]), reverse=True)][:5]

    # the global vocabulary: every field's ids, field-prefixed, in schema order
    lines = ([f"y=__bucket{k}__" for k in range(5)] + ["z=__value__"] + [f"c={t}" for t in vocab]
             + [f"c=__oov{k}__" for k in range(3)] + [f"h=__hash{k}__" for k in range(7)])
    assert [t.decode() for t in tft_out.vocabulary_by_name("vocab__global")] == lines
    layout = FeatureLayout.from_json(open(os.path.join(data, "layout.json")).read())
    gi = layout.global_index
    assert (gi.num_ids, gi.num_fields, gi.fields) == (len(lines), 4, ("y", "z", "c", "h"))
    assert layout.sparse == () and layout.dense == ()

    out = tft_out.transform_features_layer()(raw_tensors(df, ["y", "z"], ["c", "h"]))
    index, value = out["feat_index"].numpy(), out["feat_value"].numpy()
    assert index.shape == value.shape == (len(df), 4)
    y = df["y"].to_numpy()
    assert (index[np.isnan(y), 0] == 4).all()  # the missing bucket
    present = ~np.isnan(y)
    order = np.argsort(y[present])
    assert np.all(np.diff(index[present, 0][order]) >= 0) and set(index[present, 0]) == {0, 1, 2, 3}
    assert (index[:, 1] == 5).all()
    oov = 5 + tf.strings.to_hash_bucket_fast(c_tokens, 3).numpy()
    np.testing.assert_array_equal(index[:, 2], 6 + np.array([vocab.index(t) if t in vocab else o
                                                             for t, o in zip(c_tokens, oov)]))
    hashed = tf.strings.to_hash_bucket_fast(df["h"].to_numpy(object).astype(str), 7).numpy()
    np.testing.assert_array_equal(index[:, 3], 14 + hashed)
    z = df["z"].to_numpy()
    filled = np.where(np.isnan(z), 5.0, np.clip(z, 0, 10))
    np.testing.assert_allclose(value[:, 1], (filled - filled.mean()) / filled.std(), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(value[:, [0, 2, 3]], 1.0)

    files = glob.glob(os.path.join(data, "train", "part-*.tfrecord.gz"))
    records = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(100_000).get_single_element()
    parsed = tf.io.parse_example(records, tft_out.transformed_feature_spec())
    assert parsed["feat_index"].shape == (len(df), 4) and parsed["feat_value"].dtype == tf.float32
    assert sorted(map(tuple, parsed["feat_index"].numpy().tolist())) == sorted(map(tuple, index.tolist()))

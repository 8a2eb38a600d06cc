"""The transform graph's two formats (``beam_jobs.preprocess.job.transform_context``): the same data either way.

The job runs tf.Transform in its TF1 graph mode by default (faster) and in its
TF2 mode with ``--tf2-transform-graph``. Both must write the same rows,
vocabularies and transformed schema, and their graphs must transform raw rows
alike; only how a user may apply ``transform_fn/`` differs. Ids are equal;
floats may differ in the last bit (the z-score of ``age`` did on 234 of 2,870
rows: TF2's optimized function computes it with other ops).
"""
from __future__ import annotations

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.test_score_e2e import _raw_inputs

pytestmark = pytest.mark.slow


def _features(data: str, split: str) -> dict[str, np.ndarray]:
    """Every feature of every record, in file order (each holds one value per row)."""
    files = sorted(glob.glob(os.path.join(data, split, "*.tfrecord.gz")))
    columns: dict[str, list] = {}
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        for name, feature in tf.train.Example.FromString(record.numpy()).features.feature.items():
            values = getattr(feature, feature.WhichOneof("kind")).value
            assert len(values) == 1, name
            columns.setdefault(name, []).append(values[0])
    arrays = {name: np.array(values) for name, values in columns.items()}
    return {name: a.astype(np.float32) if a.dtype.kind == "f" else a for name, a in arrays.items()}  # float_list


def _assert_same(got: dict, expected: dict, what: str) -> None:
    assert sorted(got) == sorted(expected) and len(got) > 5, what
    for name, want in expected.items():
        have = np.asarray(got[name])
        want = np.asarray(want)
        assert have.dtype == want.dtype and have.shape == want.shape, (what, name)
        if want.dtype.kind == "f":
            np.testing.assert_array_max_ulp(have, want, maxulp=1)
        else:
            np.testing.assert_array_equal(have, want, err_msg=f"{what}: {name}")


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def test_the_tf1_and_tf2_transform_graphs_write_and_transform_the_same(clicks_run, tmp_path):
    import tensorflow_transform as tft

    from ctrflow.beam_jobs.preprocess import job as preprocess
    from ctrflow.pipeline.artifacts import live_dir

    out = tmp_path / "tf2"
    preprocess.run(["--schema", clicks_run["schema"], "--train", clicks_run["train_csv"],
                    "--eval", clicks_run["eval_csv"], "--output", str(out), "--tf2-transform-graph"])
    tf1_dir, tf2_dir = clicks_run["data"], live_dir(str(out))

    for split, frame in (("train", clicks_run["train_df"]), ("eval", clicks_run["eval_df"])):
        tf1_rows = _features(tf1_dir, split)
        assert len(tf1_rows["city"]) == len(frame)
        _assert_same(tf1_rows, _features(tf2_dir, split), split)  # row for row, in the same order
    assert (_read(os.path.join(tf1_dir, "transformed_metadata", "schema.pbtxt"))
            == _read(os.path.join(tf2_dir, "transformed_metadata", "schema.pbtxt")))
    assets = sorted(os.listdir(os.path.join(tf1_dir, "transform_fn", "assets")))
    assert assets and assets == sorted(os.listdir(os.path.join(tf2_dir, "transform_fn", "assets")))
    for name in assets:
        assert (_read(os.path.join(tf1_dir, "transform_fn", "assets", name))
                == _read(os.path.join(tf2_dir, "transform_fn", "assets", name))), name

    raw = _raw_inputs(clicks_run["eval_df"])
    tf1_graph, tf2_graph = tft.TFTransformOutput(tf1_dir), tft.TFTransformOutput(tf2_dir)
    got = tf1_graph.transform_features_layer()(raw)
    expected = tf2_graph.transform_raw_features(raw, drop_unused_features=True)  # eager: TF2 graphs only
    _assert_same({k: v.numpy() for k, v in got.items()}, {k: v.numpy() for k, v in expected.items()}, "graphs")
    with pytest.raises(RuntimeError, match="eager execution"):  # tf.Transform's rule for TF1 graphs (README)
        tf1_graph.transform_raw_features(raw, drop_unused_features=True)

"""train --serving-base: the export copied to BASE/<N>/ (TF Serving / Vertex AI), N only growing."""
import os

import numpy as np
import pytest
import tensorflow as tf

from ctrflow.model import serving_layout
from ctrflow.model.serving_layout import publish_version, versions


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory) -> str:
    """A real SavedModel with a serving_default signature, an asset and variables (seconds to write)."""
    root = tmp_path_factory.mktemp("tiny")
    module = tf.Module()
    module.w = tf.Variable([2.0])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def score(x):
        return {"score": x * module.w}

    module.score = score
    path = str(root / "export")
    tf.saved_model.save(module, path, signatures={"serving_default": score})
    os.makedirs(os.path.join(path, "assets.extra"))
    with open(os.path.join(path, "assets.extra", "model_info.json"), "w") as f:
        f.write("{}")
    return path


def _files(folder) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, n), folder) for d, _, names in os.walk(folder) for n in names)


def test_versions_grow_from_the_highest_and_ignore_other_folders(tiny_export, tmp_path):
    base = tmp_path / "base"
    assert versions(str(base)) == []
    assert publish_version(tiny_export, str(base)) == str(base / "1")
    assert publish_version(tiny_export, str(base)) == str(base / "2")
    (base / "notes").mkdir()
    (base / "7b").mkdir()
    (base / "10").mkdir()  # written by hand or by an older run: the next is above it, never a reused number
    assert publish_version(tiny_export, str(base)) == str(base / "11")
    assert versions(str(base)) == [1, 2, 10, 11]
    assert sorted(os.listdir(base)) == ["1", "10", "11", "2", "7b", "notes"]  # no staging folder left
    assert _files(base / "11") == _files(tiny_export)
    loaded = tf.saved_model.load(str(base / "11"))
    out = loaded.signatures["serving_default"](x=tf.constant([1.5, -1.0]))
    np.testing.assert_array_equal(out["score"].numpy(), [3.0, -2.0])


def test_a_version_taken_meanwhile_is_skipped(tiny_export, tmp_path, monkeypatch):
    """Another writer fills version 1 between our listing and our rename: we take 2, and leave 1 alone."""
    base = tmp_path / "base"
    (base / "1").mkdir(parents=True)
    (base / "1" / "saved_model.pb").write_bytes(b"theirs")
    listed = versions
    calls = []

    def stale_once(b):
        calls.append(b)
        return [] if len(calls) == 1 else listed(b)

    monkeypatch.setattr(serving_layout, "versions", stale_once)
    assert publish_version(tiny_export, str(base)) == str(base / "2")
    assert (base / "1" / "saved_model.pb").read_bytes() == b"theirs" and len(calls) == 2
    assert sorted(os.listdir(base)) == ["1", "2"]


def test_a_folder_without_a_graph_is_refused(tmp_path):
    (tmp_path / "nomodel").mkdir()
    with pytest.raises(FileNotFoundError, match="no saved_model.pb"):
        publish_version(str(tmp_path / "nomodel"), str(tmp_path / "base"))
    assert os.listdir(tmp_path / "base") == []


@pytest.mark.slow
def test_two_trained_exports_load_as_versions_1_and_2(clicks_run, tmp_path):
    """The trained model's export, published twice: each version loads alone and scores as the export does."""
    export_dir = os.path.join(clicks_run["model"], "export")
    base = tmp_path / "serving" / "clicks"
    assert [publish_version(export_dir, str(base)) for _ in range(2)] == [str(base / "1"), str(base / "2")]
    rows = clicks_run["eval_df"].dropna().head(5)
    raw = {c: tf.constant(rows[c].astype(str).to_numpy()) for c in ("age", "spend", "city", "device", "tag")}
    expected = tf.saved_model.load(export_dir).signatures["serving_default"](**raw)["score"].numpy()
    for version in ("1", "2"):
        loaded = tf.saved_model.load(str(base / version))
        assert "serving_default" in loaded.signatures
        np.testing.assert_array_equal(loaded.signatures["serving_default"](**raw)["score"].numpy(), expected)
        assert _files(base / version) == _files(export_dir)

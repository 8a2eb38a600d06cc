"""model.serving_tf: a scoring process loads and calls the SavedModel without TensorFlow's ``__init__``,
and any later use of the full ``tensorflow`` API in that process still works."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import make_clicks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Scores 300 rows through the lean runtime in a fresh process, then uses the full API there.
_CHILD = """
import json, sys
import numpy as np
import pyarrow as pa
from ctrflow.beam_jobs.scoring.arrow_tensors import PackedBatch, SignatureColumns
from ctrflow.model import serving_tf
rt = serving_tf.runtime()
loaded = rt.load_saved_model(sys.argv[1])
fn = loaded.signatures["score_and_ids"]
table = pa.ipc.open_file(sys.argv[2]).read_all()
packed = PackedBatch.pack(table, SignatureColumns.from_specs(fn.structured_input_signature[1]))
scores = fn(**packed.tensors())["score"].numpy()
deferred_after_scoring = serving_tf.is_deferred()
import tensorflow as tf  # the full API, as any other code in the process may want it
version = tf.__version__  # a dunder that is not set yet runs the __init__ too
full = float(tf.reduce_sum(tf.constant([1.5, 2.0])).numpy())
print(json.dumps({"scores": scores.tolist(), "deferred_after_scoring": deferred_after_scoring,
                  "deferred_after_full_use": serving_tf.is_deferred(), "full": full,
                  "has_keras_attr": hasattr(tf, "keras"), "version": version}))
"""


@pytest.mark.slow
def test_a_fresh_process_scores_without_tensorflow_init_and_can_use_the_full_api_after(clicks_run, tmp_path):
    import pyarrow as pa
    import tensorflow as tf

    df = make_clicks(300, seed=9, first_id=70_000)
    export = os.path.join(clicks_run["model"], "export")
    loaded = tf.saved_model.load(export)
    fn = loaded.signatures["score_and_ids"]
    specs = fn.structured_input_signature[1]
    cols = {}
    for name, spec in specs.items():
        if spec.dtype == tf.string:
            cols[name] = pa.array(df[name].fillna("").astype(str).tolist(), pa.string())
        else:
            cols[name] = pa.array(df[name].to_numpy(np.float32))
    table = pa.table(cols)
    path = tmp_path / "rows.arrow"
    with pa.ipc.new_file(str(path), table.schema) as writer:
        writer.write_table(table)
    expected = fn(**{n: tf.constant(table.column(n).to_numpy(zero_copy_only=False), s.dtype)
                     for n, s in specs.items()})["score"].numpy()

    proc = subprocess.run([sys.executable, "-c", _CHILD, export, str(path)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["deferred_after_scoring"] is True  # TensorFlow's __init__ never ran while scoring
    assert got["deferred_after_full_use"] is False and got["full"] == 3.5 and got["has_keras_attr"]
    assert got["version"] == tf.__version__
    np.testing.assert_array_equal(np.array(got["scores"], np.float32), expected)


def test_the_runtime_falls_back_to_the_full_import_when_the_lean_one_fails(monkeypatch, caplog):
    import tensorflow as tf

    from ctrflow.model import serving_tf

    def broken():
        raise ImportError("no such module tensorflow.python.moved")

    monkeypatch.setattr(serving_tf, "_RUNTIME", [])
    monkeypatch.setattr(serving_tf, "_lean", broken)
    rt = serving_tf.runtime()
    assert "importing all of TensorFlow" in caplog.text and "tensorflow.python.moved" in caplog.text
    assert rt.load_saved_model is tf.saved_model.load and rt.string == tf.string
    assert rt.constant([1, 2]).numpy().tolist() == [1, 2]
    assert serving_tf.runtime() is rt  # once per process


def test_an_initialised_tensorflow_is_left_as_it_is():
    import tensorflow as tf

    from ctrflow.model import serving_tf

    serving_tf._install_deferred_package()
    assert sys.modules["tensorflow"] is tf and not serving_tf.is_deferred()


def test_flat_caller_falls_back_to_the_keyword_call_without_the_private_entry_points():
    import tensorflow as tf

    from ctrflow.model.serving_tf import flat_caller

    class Signature:  # what a loaded signature offers publicly: a keyword call and its input specs
        structured_input_signature = ((), {"b": tf.TensorSpec([None], tf.float32),
                                           "a": tf.TensorSpec([None], tf.int64)})

        def __call__(self, **inputs):
            return {"score": tf.cast(inputs["a"], tf.float32) * 10 + inputs["b"]}

    names, call = flat_caller(Signature())
    assert names == ("b", "a")
    out = call([np.array([0.5, 0.25], np.float32), np.array([1, 2], np.int64)])
    assert out["score"].numpy().tolist() == [10.5, 20.25]

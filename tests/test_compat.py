"""common.compat: every trick against its public-API path, which must give the same results.

Each test runs a trick's path and its public path (``CTRFLOW_PUBLIC_API_ONLY=1``)
on the same input and compares the results bit for bit; the end-to-end test
does it for a whole ``ctrflow score`` run. Tests that need a fresh process (what
``import tensorflow`` did) run children.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from ctrflow.common import compat
from ctrflow.common.errors import OptionsError
from tests.conftest import make_clicks, write_csv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3"}


def _env(public: bool) -> dict[str, str]:
    return {**os.environ, **QUIET, compat.PUBLIC_API_ONLY: "1" if public else "0"}


def _child(code: str, *args: str, public: bool) -> dict:
    """Runs ``code`` in a fresh interpreter; its last stdout line is JSON."""
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                          env=_env(public))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def public(monkeypatch):
    """Switches this process to public APIs only (``use_trick`` reads the variable at every call)."""
    def switch(on: bool) -> None:
        monkeypatch.setenv(compat.PUBLIC_API_ONLY, "1" if on else "0")
    return switch


# ------------------------------------------------------------------------------------------------- the registry

PACKAGE_FOLDERS = ("common", "schemas", "pipeline", "model", "beam_jobs", "cli")
# private names outside common/compat that are not a library's: argparse's (the stdlib) and ctrflow's own classes
ALLOWED = {("common/flags.py", "argparse._ArgumentGroup"), ("model/config.py", "argparse._ArgumentGroup"),
           ("beam_jobs/options.py", "parser._actions"), ("model/export.py", "module._raw_spec")}


def _private_uses(path: str) -> list[tuple[int, str]]:
    """Imports of private modules or names, ``x._name`` on anything but self/cls, ``sys.modules``, ``__class__ =``."""
    import ast

    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module not in (None, "__future__"):
            parts = node.module.split(".")
            if not node.module.startswith("ctrflow") and (
                    any(p.startswith("_") or p in ("python", "src", "portability") for p in parts)
                    or any(a.name.startswith("_") for a in node.names)):
                found.append((node.lineno, f"from {node.module}"))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, f"import {a.name}") for a in node.names
                      if any(p.startswith("_") or p in ("python", "src") for p in a.name.split("."))]
        elif isinstance(node, ast.Attribute):
            value = node.value
            if isinstance(value, ast.Name) and value.id in ("self", "cls"):
                continue
            if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "super":
                continue
            private = node.attr.startswith("_") and not node.attr.startswith("__")
            if private or ast.unparse(node) == "sys.modules" or (
                    node.attr == "__class__" and isinstance(node.ctx, ast.Store)):
                found.append((node.lineno, ast.unparse(node)))
    return found


def test_private_names_of_the_libraries_are_used_only_in_common_compat():
    found = []
    for folder in PACKAGE_FOLDERS:
        for here, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in files:
                path = os.path.relpath(os.path.join(here, name), ROOT)
                if name.endswith(".py") and not path.startswith(os.path.join("common", "compat")):
                    found += [f"{path}:{line}: {what}" for line, what in _private_uses(path)
                              if (path, what) not in ALLOWED]
    assert found == []


def test_the_private_name_check_sees_what_it_must(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import sys\nfrom tensorflow.python.framework import ops\nfrom keras.src import x\n"
                   "def f(fn, m):\n    sys.modules['a'] = None\n    m.__class__ = int\n    return fn._call_flat\n")
    assert sorted(_private_uses(str(src))) == [(2, "from tensorflow.python.framework"), (3, "from keras.src"),
                                               (5, "sys.modules"), (6, "m.__class__"), (7, "fn._call_flat")]


def test_one_variable_turns_every_trick_off_and_a_wrong_value_stops_with_one_line(monkeypatch):
    monkeypatch.delenv(compat.PUBLIC_API_ONLY, raising=False)
    assert not compat.public_api_only() and set(compat.paths_enabled().values()) == {True}
    monkeypatch.setenv(compat.PUBLIC_API_ONLY, "1")
    assert compat.public_api_only() and set(compat.paths_enabled().values()) == {False}
    assert compat.manifest()["public_api_only"] is True
    monkeypatch.setenv(compat.PUBLIC_API_ONLY, "yes")
    with pytest.raises(OptionsError, match="CTRFLOW_PUBLIC_API_ONLY='yes': use 1"):
        compat.use_trick("tensorflow.flat_call")
    with pytest.raises(KeyError):
        compat.use_trick("no.such_trick")


def test_a_failed_trick_is_off_for_the_rest_of_the_process_with_one_warning(monkeypatch, caplog):
    monkeypatch.delenv(compat.PUBLIC_API_ONLY, raising=False)
    monkeypatch.setattr(compat, "_FAILED", {})
    monkeypatch.setattr(compat, "_USED", {})
    compat.trick_failed("beam.fn_api_runner", ImportError("moved"))
    compat.trick_failed("beam.fn_api_runner", ImportError("moved"))
    assert not compat.use_trick("beam.fn_api_runner") and compat.use_trick("tensorflow.flat_call")
    assert len([r for r in caplog.records if "beam.fn_api_runner failed" in r.getMessage()]) == 1
    compat.record("tensorflow.flat_call", "trick")
    assert compat.manifest() == {"public_api_only": False, "paths_used": {"tensorflow.flat_call": "trick"},
                                 "failed": {"beam.fn_api_runner": "ImportError: moved"}}


def test_importing_the_compat_package_imports_no_library():
    got = _child("import json, sys\n"
                 "from ctrflow.common.compat import beam, keras, tensorflow, tft\n"
                 "print(json.dumps([m for m in ('tensorflow', 'keras', 'tf_keras', 'apache_beam', "
                 "'tensorflow_transform') if m in sys.modules]))", public=False)
    assert got == []


# ------------------------------------------------------------------- tensorflow: the deferred and the lean import

# Scores 300 rows through the serving runtime in a fresh process, then uses the full API there.
_SCORE_CHILD = """
import json, sys
import numpy as np
import pyarrow as pa
from ctrflow.beam_jobs.scoring.arrow_tensors import PackedBatch, SignatureColumns
from ctrflow.common import compat
from ctrflow.common.compat import tensorflow as tf_compat
rt = tf_compat.serving_runtime()
loaded = rt.load_saved_model(sys.argv[1])
fn = loaded.signatures["score_and_ids"]
table = pa.ipc.open_file(sys.argv[2]).read_all()
packed = PackedBatch.pack(table, SignatureColumns.from_specs(fn.structured_input_signature[1]))
scores = fn(**packed.tensors())["score"].numpy()
deferred_after_scoring = tf_compat.is_deferred()
modules = {m: m in sys.modules for m in ("keras", "tf_keras")}
import tensorflow as tf  # the full API, as any other code in the process may want it
version = tf.__version__  # a dunder that is not set yet runs the __init__ too
full = float(tf.reduce_sum(tf.constant([1.5, 2.0])).numpy())
import keras  # Keras works afterwards, whichever way TensorFlow was imported
print(json.dumps({"scores": scores.tolist(), "deferred_after_scoring": deferred_after_scoring,
                  "deferred_after_full_use": tf_compat.is_deferred(), "full": full, "modules": modules,
                  "has_keras_attr": hasattr(tf, "keras"), "version": version,
                  "dense": keras.layers.Dense(2).compute_output_shape((None, 3)),
                  "paths": compat.paths_used()}))
"""


@pytest.mark.slow
@pytest.mark.extended
def test_the_deferred_import_scores_like_import_tensorflow_and_the_full_api_works_after(clicks_run, tmp_path):
    """Bit-identical scores from a process that never ran ``tensorflow/__init__`` and from one that did."""
    import tensorflow as tf

    df = make_clicks(300, seed=9, first_id=70_000)
    export = os.path.join(clicks_run["model"], "export")
    fn = tf.saved_model.load(export).signatures["score_and_ids"]
    specs = fn.structured_input_signature[1]
    table = pa.table({name: pa.array(df[name].fillna("").astype(str).tolist(), pa.string())
                      if spec.dtype == tf.string else pa.array(df[name].to_numpy(np.float32))
                      for name, spec in specs.items()})
    path = tmp_path / "rows.arrow"
    with pa.ipc.new_file(str(path), table.schema) as writer:
        writer.write_table(table)
    expected = fn(**{n: tf.constant(table.column(n).to_numpy(zero_copy_only=False), s.dtype)
                     for n, s in specs.items()})["score"].numpy()

    lean = _child(_SCORE_CHILD, export, str(path), public=False)
    whole = _child(_SCORE_CHILD, export, str(path), public=True)
    assert lean["deferred_after_scoring"] is True  # TensorFlow's __init__ never ran while scoring
    assert lean["modules"] == {"keras": False, "tf_keras": False}
    assert lean["paths"]["tensorflow.deferred_import"] == "trick"
    assert whole["deferred_after_scoring"] is False
    assert set(whole["paths"].values()) == {"public"} and "tensorflow.deferred_import" in whole["paths"]
    for got in (lean, whole):
        assert got["deferred_after_full_use"] is False and got["full"] == 3.5 and got["has_keras_attr"]
        assert got["version"] == tf.__version__ and got["dense"] == [None, 2]
        np.testing.assert_array_equal(np.array(got["scores"], np.float32), expected)


def test_the_runtime_falls_back_to_the_full_import_when_the_lean_one_fails(monkeypatch, caplog):
    import tensorflow as tf

    from ctrflow.common.compat import tensorflow as tf_compat

    def broken():
        raise ImportError("no such module tensorflow.python.moved")

    monkeypatch.delenv(compat.PUBLIC_API_ONLY, raising=False)
    monkeypatch.setattr(compat, "_FAILED", {})
    monkeypatch.setattr(tf_compat, "_RUNTIME", [])
    monkeypatch.setattr(tf_compat, "_lean", broken)
    rt = tf_compat.serving_runtime()
    assert "tensorflow.deferred_import failed" in caplog.text and "tensorflow.python.moved" in caplog.text
    assert rt.load_saved_model is tf.saved_model.load and rt.string == tf.string
    assert rt.constant([1, 2]).numpy().tolist() == [1, 2]
    assert tf_compat.serving_runtime() is rt  # once per process
    assert compat.paths_used()["tensorflow.deferred_import"] == "public"


def test_an_initialised_tensorflow_is_left_as_it_is():
    import tensorflow as tf

    from ctrflow.common.compat import tensorflow as tf_compat

    tf_compat._install_deferred_package()
    assert sys.modules["tensorflow"] is tf and not tf_compat.is_deferred()


_IMPORT_CHILD = """
import json, sys, time
started = time.process_time()
from ctrflow.common.compat.tensorflow import import_tensorflow
tf = import_tensorflow()
seconds = time.process_time() - started
eager = [m for m in ("keras.src.optimizers", "tf_keras.src.optimizers") if m in sys.modules]
import keras
print(json.dumps({"eager": eager, "tf_keras": tf.keras.__name__, "dense": tf.keras.layers.Dense(2).units,
                  "keras": keras.layers.Dense(3).units, "version": tf.__version__, "cpu_s": seconds}))
"""


@pytest.mark.extended
def test_import_tensorflow_without_its_eager_keras_import_gives_the_same_tensorflow_and_keras():
    """The same ``tf.keras`` (Keras 3, or tf_keras with TF_USE_LEGACY_KERAS=1) and ``keras`` after either import."""
    trick, public = _child(_IMPORT_CHILD, public=False), _child(_IMPORT_CHILD, public=True)
    assert trick["eager"] == [] and len(public["eager"]) == 1  # the optimizers TensorFlow's __init__ imports
    assert {k: v for k, v in trick.items() if k not in ("eager", "cpu_s")} == {
        k: v for k, v in public.items() if k not in ("eager", "cpu_s")}
    assert (trick["dense"], trick["keras"]) == (2, 3)


# ----------------------------------------------------------------------- tensorflow: partial load and flat calls

def _transformed(transform, df) -> dict:
    """The model inputs of ``df``'s rows, from the export's own ``transform`` function."""
    import tensorflow as tf

    specs = transform.input_signature[0]
    raw = {n: tf.constant(df[n].fillna("").astype(str).tolist() if s.dtype == tf.string
                          else df[n].to_numpy(np.float32), s.dtype) for n, s in specs.items()}
    return {k: v.numpy() for k, v in transform(raw).items()}


@pytest.mark.slow
def test_a_partial_load_scores_like_the_whole_export(clicks_run, public):
    from ctrflow.common.compat import tensorflow as tf_compat

    export = os.path.join(clicks_run["model"], "export")
    paths = ("root.transform", "root.signatures.score_features")
    public(False)
    part = tf_compat.load_saved_model_parts(export, paths)
    assert compat.paths_used()["tensorflow.partial_load"] == "trick"
    public(True)
    whole = tf_compat.load_saved_model_parts(export, paths)
    assert compat.paths_used()["tensorflow.partial_load"] == "public"
    assert sorted(part) == sorted(whole) == sorted(paths)

    df = clicks_run["eval_df"].head(400)
    inputs = [_transformed(got["root.transform"], df) for got in (part, whole)]
    assert inputs[0].keys() == inputs[1].keys()
    for name in inputs[0]:
        np.testing.assert_array_equal(inputs[0][name], inputs[1][name])
    scores = []
    for got in (part, whole):
        fn = got["root.signatures.score_features"]
        scores.append(fn(**{k: inputs[0][k] for k in fn.structured_input_signature[1]})["score"].numpy())
    np.testing.assert_array_equal(scores[0], scores[1])
    with pytest.raises(KeyError, match="has no root.nothing"):
        tf_compat.load_saved_model_parts(export, ("root.nothing",))
    public(False)
    with pytest.raises(KeyError, match="has no root.nothing"):
        tf_compat.load_saved_model_parts(export, ("root.nothing",))


@pytest.mark.slow
def test_the_flat_call_scores_like_the_keyword_call(clicks_run, public):
    import tensorflow as tf

    from ctrflow.common.compat import tensorflow as tf_compat

    loaded = tf.saved_model.load(os.path.join(clicks_run["model"], "export"))
    fn = loaded.signatures["score_features"]
    inputs = _transformed(loaded.transform, clicks_run["eval_df"].head(500))
    inputs = {k: inputs[k] for k in fn.structured_input_signature[1]}
    public(False)
    names, flat = tf_compat.flat_caller(fn)
    assert compat.paths_used()["tensorflow.flat_call"] == "trick"
    public(True)
    same_names, keyword = tf_compat.flat_caller(fn)
    assert compat.paths_used()["tensorflow.flat_call"] == "public"
    assert names == same_names == tuple(tf.nest.flatten({n: n for n in fn.structured_input_signature[1]}))
    arrays = [inputs[n] for n in names]
    np.testing.assert_array_equal(flat(arrays)["score"].numpy(), keyword(arrays)["score"].numpy())
    np.testing.assert_array_equal(flat(arrays)["score"].numpy(), fn(**inputs)["score"].numpy())


class _WithoutArgKeywords:
    """A loaded signature on a TensorFlow without ``_arg_keywords``, whose input dict is not in flat order."""

    def __init__(self, fn):
        self._fn = fn
        specs = fn.structured_input_signature
        self.structured_input_signature = (specs[0], dict(sorted(specs[1].items(), reverse=True)))

    def __getattr__(self, name):
        if name == "_arg_keywords":
            raise AttributeError(name)
        return getattr(self._fn, name)

    def __call__(self, **inputs):
        return self._fn(**inputs)


def test_flat_caller_never_swaps_two_inputs_of_the_same_dtype(tmp_path, public):
    """The hole of the old fallback: names in the signature dict's order, not the flat order ``_call_flat`` takes."""
    import tensorflow as tf

    from ctrflow.common.compat import tensorflow as tf_compat

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="a"),
                                      tf.TensorSpec([None], tf.float32, name="b")])
        def serve(self, a, b):
            return {"score": a * 10.0 + b}

    tf.saved_model.save(Module(), str(tmp_path), signatures={"serve": Module().serve})
    fn = _WithoutArgKeywords(tf.saved_model.load(str(tmp_path)).signatures["serve"])
    assert list(fn.structured_input_signature[1]) == ["b", "a"]
    inputs = {"a": np.array([1.0, 2.0], np.float32), "b": np.array([0.5, 0.25], np.float32)}
    for on in (False, True):
        public(on)
        names, call = tf_compat.flat_caller(fn)
        assert names == ("a", "b")
        assert call([inputs[n] for n in names])["score"].numpy().tolist() == [10.5, 20.25]


def test_flat_caller_falls_back_to_the_keyword_call_without_the_private_entry_points(public):
    import tensorflow as tf

    from ctrflow.common.compat.tensorflow import flat_caller

    class Signature:  # what a loaded signature offers publicly: a keyword call and its input specs
        structured_input_signature = ((), {"b": tf.TensorSpec([None], tf.float32),
                                           "a": tf.TensorSpec([None], tf.int64)})

        def __call__(self, **inputs):
            return {"score": tf.cast(inputs["a"], tf.float32) * 10 + inputs["b"]}

    public(False)
    names, call = flat_caller(Signature())
    assert names == ("a", "b")
    out = call([np.array([1, 2], np.int64), np.array([0.5, 0.25], np.float32)])
    assert out["score"].numpy().tolist() == [10.5, 20.25]


# ----------------------------------------------------------------------------------- tensorflow: the rest

def test_the_public_eager_tensor_check_matches_the_private_class():
    """``pipeline.vocab_lookup`` tells a constant vocabulary file from a graph tensor without ``ops.EagerTensor``."""
    import tensorflow as tf
    from tensorflow.python.framework.ops import EagerTensor

    from ctrflow.pipeline.vocab_lookup import _is_constant

    seen = {}
    values = {"eager": tf.constant("v.txt"), "str": "v.txt", "bytes": b"v.txt", "numpy": np.array(["v.txt"]),
              "variable": tf.Variable(1.0), "ragged": tf.ragged.constant([[1]])}
    for name, value in values.items():
        seen[name] = (_is_constant(value), isinstance(value, (str, EagerTensor)))

    @tf.function
    def traced(x):
        seen["argument"] = (_is_constant(x), isinstance(x, (str, EagerTensor)))
        inner = tf.constant("v.txt")
        seen["graph constant"] = (_is_constant(inner), isinstance(inner, (str, EagerTensor)))
        with tf.init_scope():
            lifted = tf.constant("v.txt")
            seen["lifted"] = (_is_constant(lifted), isinstance(lifted, (str, EagerTensor)))
        return x

    traced(tf.constant("v.txt"))
    assert {k: a for k, (a, _) in seen.items()} == {k: b for k, (_, b) in seen.items()}
    assert [k for k, (a, _) in seen.items() if a] == ["eager", "str", "lifted"]


def test_grappler_is_switched_off_only_on_the_trick_path(public):
    from ctrflow.common.compat import tensorflow as tf_compat

    calls = []
    runtime = tf_compat.ServingRuntime(*[None] * 5, set_optimizer_options=calls.append,
                                       set_intra_op_threads=None, set_inter_op_threads=None)
    public(True)
    tf_compat.disable_graph_optimizer(runtime)
    assert calls == [] and compat.paths_used()["tensorflow.grappler_off"] == "public"
    public(False)
    tf_compat.disable_graph_optimizer(runtime)
    assert calls == [{"disable_meta_optimizer": True}] and compat.paths_used()["tensorflow.grappler_off"] == "trick"


# -------------------------------------------------------------------------------------- keras: optimizer slots

def _train(cls, steps: int = 6, **kwargs) -> tuple[list[np.ndarray], list]:
    """``steps`` updates of a table (sparse gradients, duplicate ids) and a kernel (dense gradients)."""
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(3)
    table = keras.Variable(rng.normal(size=(12, 3)).astype("float32"), name="table")
    linear = keras.Variable(rng.normal(size=(12, 1)).astype("float32"), name="linear_table")
    kernel = keras.Variable(rng.normal(size=(3, 2)).astype("float32"), name="kernel")
    opt = cls(learning_rate=0.05, **kwargs)
    if hasattr(opt, "set_row_weight_decay"):
        opt.set_row_weight_decay([linear], 0.5)
    opt.build([table, linear, kernel])
    for step in range(steps):
        ids = tf.constant(rng.integers(0, 12, 5))  # repeats and untouched rows
        grads = [tf.IndexedSlices(tf.constant(rng.normal(size=(5, 3)), tf.float32), ids, tf.constant([12, 3])),
                 tf.IndexedSlices(tf.constant(rng.normal(size=(5, 1)), tf.float32), ids, tf.constant([12, 1])),
                 tf.constant(rng.normal(size=(3, 2)), tf.float32)]
        opt.apply_gradients(zip(grads, [table, linear, kernel]))
    slots = [opt._slots.get(s, v) for s in opt.SLOTS for v in (table, linear, kernel)]
    return [v.numpy() for v in (table, linear, kernel, *slots)], slots


@pytest.mark.parametrize("name, kwargs", [("LazyAdam", {"row_weight_decay": 0.1}), ("SparseAdagrad", {}),
                                          ("SparseFtrl", {"l1_regularization_strength": 0.01})])
def test_the_sparse_optimizers_update_the_same_through_public_slot_lookups(name, kwargs, public):
    """The same weights and slots after 6 steps of sparse (duplicate ids) and dense gradients, bit for bit."""
    from ctrflow.model import optimizers

    cls = getattr(optimizers, name)
    public(False)
    trick_values, trick_slots = _train(cls, **kwargs)
    assert compat.paths_used()["keras.optimizer_slots"] == "trick"
    public(True)
    public_values, public_slots = _train(cls, **kwargs)
    assert compat.paths_used()["keras.optimizer_slots"] == "public"
    for a, b in zip(trick_values, public_values):
        np.testing.assert_array_equal(a, b)
    assert [v.name for v in trick_slots] == [v.name for v in public_slots]


def test_the_public_slot_lookup_finds_the_objects_keras_keeps(public):
    import keras

    from ctrflow.common.compat.keras import SlotVariables

    table, kernel = keras.Variable(np.zeros((4, 2), "float32")), keras.Variable(np.zeros((2, 2), "float32"))
    opt = keras.optimizers.Adam()
    opt.build([table, kernel])
    public(True)
    found = SlotVariables(opt, [table, kernel], ("momentum", "velocity"))
    assert found.index(kernel.value) == 1 and found.index(table) == 0
    assert found.get("momentum", kernel.value) is opt._momentums[1]
    assert found.get("velocity", table.value) is opt._velocities[0]
    with pytest.raises(RuntimeError, match="no accumulator slot variable"):
        SlotVariables(opt, [table], ("accumulator",))


# ------------------------------------------------------------------------------- tf_keras: layer traces

def test_an_export_without_layer_traces_serves_the_same_and_holds_fewer_functions(tmp_path, public):
    import tensorflow as tf
    import tf_keras
    from tensorflow.core.protobuf import saved_model_pb2

    from ctrflow.common.compat.keras import without_layer_traces

    class Module(tf.Module):
        def __init__(self):
            super().__init__()
            self.layer = tf_keras.Sequential([tf_keras.layers.Dense(2, kernel_initializer="ones")])
            self.layer(tf.zeros((1, 3)))

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
        def serve(self, x):
            return {"score": self.layer(x)}

    x = tf.constant([[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]])
    out, functions = [], []
    for on in (False, True):
        public(on)
        module, path = Module(), str(tmp_path / f"public-{on}")
        with without_layer_traces():
            tf.saved_model.save(module, path, signatures={"serve": module.serve})
        out.append(tf.saved_model.load(path).signatures["serve"](x=x)["score"].numpy())
        saved = saved_model_pb2.SavedModel()
        with open(os.path.join(path, "saved_model.pb"), "rb") as f:
            saved.ParseFromString(f.read())
        functions.append(len(saved.meta_graphs[0].graph_def.library.function))
    np.testing.assert_array_equal(out[0], out[1])
    assert functions[0] < functions[1], functions


# ------------------------------------------------------------------------------- beam: the local runner

def test_the_local_runner_and_beams_direct_runner_give_the_same_results(public):
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.testing.util import assert_that, equal_to

    from ctrflow.beam_jobs.runners import new_pipeline

    args = ["--direct_num_workers", "2", "--direct_running_mode", "multi_threading"]
    for on in (False, True):
        public(on)
        p = new_pipeline(args)
        assert isinstance(p.runner, fn_runner.FnApiRunner) != on
        with p:
            words = p | beam.Create(["a", "b", "a", "c", "a"]) | beam.combiners.Count.PerElement()
            assert_that(words, equal_to([("a", 3), ("b", 1), ("c", 1)]))
        assert compat.paths_used()["beam.fn_api_runner"] == ("public" if on else "trick")


# -------------------------------------------------------------------------------------- tf.Transform, python

def test_the_empty_vocabulary_token_is_tf_transforms():
    import tensorflow as tf
    from tensorflow_transform import analyzers

    from ctrflow.common.compat.tft import EMPTY_VOCABULARY_TOKEN

    assert analyzers.get_empy_vocabulary_dummy_value(tf.string) == (1, EMPTY_VOCABULARY_TOKEN)


_EXIT_CHILD = """
import atexit
from ctrflow.common import compat
atexit.register(lambda: print("atexit ran", flush=True))
print("done", flush=True)
compat.exit_process(3)
"""


@pytest.mark.parametrize("public_path", [False, True])
def test_the_fast_exit_skips_exit_handlers_and_the_public_exit_runs_them(public_path):
    proc = subprocess.run([sys.executable, "-c", _EXIT_CHILD], cwd=ROOT, capture_output=True, text=True,
                          env=_env(public_path))
    assert proc.returncode == 3
    assert proc.stdout.split() == (["done", "atexit", "ran"] if public_path else ["done"])


# -------------------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def distinct_values_model(tmp_path_factory):
    """The clicks schema without its cross, so scoring takes every trick (partial load, flat calls)."""
    from ctrflow.beam_jobs.preprocess import job as preprocess
    from ctrflow.model import train
    from tests.test_unique_scoring import NO_CROSSES

    root = tmp_path_factory.mktemp("compat")
    (root / "plain.yaml").write_text(NO_CROSSES)
    train_csv = write_csv(make_clicks(2000, seed=1), root / "train.csv")
    preprocess.run(["--schema", str(root / "plain.yaml"), "--train", train_csv, "--output", str(root / "data")])
    train.run(["--data", str(root / "data"), "--output", str(root / "model"), "--model", "deepfm", "--epochs", "1",
               "--batch-size", "256", "--verbose", "0", "--ensemble", "1"])
    return str(root / "model")


# ``ctrflow score`` with every trick but the named ones off (as if each had failed): one trick's effect alone
_ONLY_CHILD = """
import sys
from ctrflow.common import compat
from ctrflow.cli.commands import main
compat._FAILED.update({t: "off in this test" for t in compat.TRICKS if t not in sys.argv[1].split(",")})
sys.exit(main(sys.argv[2:]))
"""


def _score(model: str, csv: str, out, public_path: bool, only: tuple[str, ...] | None = None) -> tuple[dict, dict]:
    """``ctrflow score`` in a fresh process: (scores by request id, the run's manifest)."""
    import pyarrow.dataset as ds

    args = ["score", "--model", model, "--input", csv, "--date", "2026-11-21", "--output", str(out),
            "--inference-batch-size", "256"]
    command = ([os.path.join(os.path.dirname(sys.executable), "ctrflow")] if only is None
               else [sys.executable, "-c", _ONLY_CHILD, ",".join(only)])
    proc = subprocess.run(command + args, cwd=ROOT, capture_output=True, text=True, env=_env(public_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    day = out / "date=2026-11-21"
    version = (day / "_LATEST").read_text().strip()
    table = ds.dataset(str(day / version), format="parquet", exclude_invalid_files=True).to_table()
    scores = dict(zip(table.column("request_id").to_pylist(), table.column("score").to_numpy()))
    return scores, json.loads((day / version / "manifest.json").read_text())


@pytest.mark.slow
@pytest.mark.extended
def test_a_scoring_run_scores_the_same_with_public_apis_only(distinct_values_model, tmp_path):
    """Scores with every trick on and with ``CTRFLOW_PUBLIC_API_ONLY=1``: equal within 5e-7.

    Every trick but one gives bit-identical scores: a run with only
    ``tensorflow.grappler_off`` on equals the run with all of them, bit for
    bit. Grappler itself (on in the public path, TensorFlow's default)
    rewrites the transform graph's float32 arithmetic, which moved about 7%
    of these scores by a few float32 ulps (at most 1.2e-7) in the runs here.
    """
    df = make_clicks(1500, seed=7, first_id=90_000, new_cities=0.1)
    df.loc[df.index % 9 == 0, "spend"] = np.nan
    csv = write_csv(df, tmp_path / "day.csv")
    trick, trick_manifest = _score(distinct_values_model, csv, tmp_path / "trick", public_path=False)
    public, public_manifest = _score(distinct_values_model, csv, tmp_path / "public", public_path=True)
    grappler_off, only_manifest = _score(distinct_values_model, csv, tmp_path / "only", public_path=False,
                                         only=("tensorflow.grappler_off",))
    assert sorted(trick) == sorted(public) == sorted(grappler_off) == sorted(df["request_id"])
    ids = sorted(trick)
    scores = {name: np.array([run[i] for i in ids]) for name, run in
              (("trick", trick), ("public", public), ("grappler_off", grappler_off))}
    np.testing.assert_array_equal(scores["grappler_off"], scores["trick"])
    np.testing.assert_allclose(scores["public"], scores["trick"], rtol=0, atol=5e-7)
    assert only_manifest["compat"]["paths_used"]["tensorflow.grappler_off"] == "trick"
    assert set(only_manifest["compat"]["paths_used"].values()) == {"trick", "public"}
    assert trick_manifest["compat"] == {
        "public_api_only": False, "failed": {},
        "paths_used": {"beam.fn_api_runner": "trick", "beam.quiet_worker_tracebacks": "trick",
                       "tensorflow.deferred_import": "trick", "tensorflow.flat_call": "trick",
                       "tensorflow.grappler_off": "trick", "tensorflow.partial_load": "trick"}}
    assert public_manifest["compat"]["public_api_only"] is True
    assert set(public_manifest["compat"]["paths_used"].values()) == {"public"}
    assert set(public_manifest["compat"]["paths_used"]) >= set(trick_manifest["compat"]["paths_used"])


@pytest.mark.slow
def test_the_preprocess_manifest_and_the_training_config_record_the_paths_taken(clicks_run):
    path = "public" if compat.public_api_only() else "trick"
    assert clicks_run["manifest"]["compat"]["paths_used"]["beam.fn_api_runner"] == path
    with open(os.path.join(clicks_run["model"], "config.json")) as f:
        recorded = json.load(f)["compat"]
    assert recorded["public_api_only"] is compat.public_api_only()
    assert recorded["paths_used"]["keras.optimizer_slots"] == path  # sparse updates are the default
    assert recorded["paths_used"]["tf_keras.no_layer_traces"] == path

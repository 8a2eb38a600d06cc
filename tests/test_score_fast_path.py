"""The scoring job's fast path: no tf.Transform import, the model preloaded while Beam starts,
one worker thread per core by default, true progress lines and a fixed-cost breakdown in the manifest."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

from ctrflow.common import compat
from tests.conftest import make_clicks, write_csv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_local_parallelism_is_added_only_when_nothing_was_chosen():
    from ctrflow.beam_jobs.runners import with_local_parallelism

    cores = os.cpu_count() or 1
    assert with_local_parallelism([]) == [f"--direct_num_workers={cores}", "--direct_running_mode=multi_threading"]
    assert with_local_parallelism(["--runner", "DirectRunner"])[-1] == "--direct_running_mode=multi_threading"
    mine = ["--direct_num_workers", "1"]
    assert with_local_parallelism(mine) == mine
    assert with_local_parallelism(["--direct_running_mode=multi_processing"]) == [
        "--direct_running_mode=multi_processing"]
    dataflow = ["--runner", "DataflowRunner", "--project", "p"]
    assert with_local_parallelism(dataflow) == dataflow


def test_metadata_is_read_through_the_given_file_functions(tmp_path):
    """The score job reads an export's metadata through Beam's filesystems, without TensorFlow."""
    from apache_beam.io.filesystems import FileSystems

    from ctrflow.beam_jobs.scoring.job import _read_text
    from ctrflow.model import artifact
    from ctrflow.pipeline import artifacts as af
    from ctrflow.pipeline.layout import FeatureLayout

    export = tmp_path / "model" / "export"
    (export / af.ASSETS_EXTRA).mkdir(parents=True)
    (export / "saved_model.pb").write_bytes(b"\x08\x01")
    (export / af.ASSETS_EXTRA / af.SCHEMA).write_text(
        "name: tiny\nformat: {type: csv}\ncolumns:\n  - {name: x, role: numeric, scale: zscore}\n"
        "  - {name: y, role: label, positive: ['1'], negative: ['0']}\n")
    layout = FeatureLayout(sparse=(), dense=(), label="y")
    (export / af.ASSETS_EXTRA / af.LAYOUT).write_text(layout.to_json())
    (export / af.ASSETS_EXTRA / af.MODEL_INFO).write_text(json.dumps({"version": "v7"}))
    seen = []

    def read(path):
        seen.append(os.path.basename(path))
        return _read_text(path)

    meta = artifact.load_metadata(str(tmp_path / "model"), read, FileSystems.exists)
    assert (meta.path, meta.version, meta.schema.name, meta.train_stats) == (str(export), "v7", "tiny", None)
    assert [c.name for c in meta.schema.columns] == ["x", "y"]
    assert meta.layout.label == "y"
    assert sorted(seen) == sorted(["schema.yaml", "stats.json", "layout.json", "model_info.json"])
    with pytest.raises(FileNotFoundError, match="no saved_model.pb"):
        artifact.load_metadata(str(tmp_path), read, FileSystems.exists)


def test_handler_takes_the_preloaded_model(monkeypatch):
    from ctrflow.beam_jobs.scoring import model_handler
    from ctrflow.model.artifact import ModelMetadata

    loaded = object()
    calls = []

    def fake_load(meta, threads, signature, inference_batch_size):
        calls.append((meta.path, threads, signature, inference_batch_size))
        return loaded

    monkeypatch.setattr(model_handler, "_load_and_warm", fake_load)
    monkeypatch.setattr(model_handler, "_PRELOADED", {})
    meta = ModelMetadata(path="/models/m/export", schema=None, layout=None, info={}, train_stats=None)
    future = model_handler.preload(meta, threads=3)
    assert model_handler.preload(meta) is future  # one load per model and process
    assert model_handler.ServingModelHandler("/models/m/export").load_model() is loaded
    assert calls == [("/models/m/export", 3, None, model_handler.INFERENCE_BATCH_ROWS)]
    assert future.load_seconds >= 0


def test_progress_lines_show_the_process_totals_rate_and_eta(caplog):
    from ctrflow.beam_jobs.input.plan import ReadTask
    from ctrflow.beam_jobs.input.transforms import _ParseFn
    from ctrflow.schemas import loads_schema
    from tests.conftest import CLICKS_SCHEMA

    schema = loads_schema(CLICKS_SCHEMA, "clicks.yaml")
    # two worker threads of one process: two DoFn copies share the tally of their read
    fn = _ParseFn(schema, "score", False, True, (), 100, total_tasks=4, total_bytes=400 << 20)
    twin = _ParseFn(schema, "score", False, True, (), 100, total_tasks=4, total_bytes=400 << 20)
    twin.read_id = fn.read_id
    fn.setup()
    twin.setup()
    fn.progress.start()
    fn.progress.started -= 10.0  # the read began 10 s ago
    with caplog.at_level(logging.INFO):
        fn._log_progress(ReadTask(path="a.csv", size=100 << 20), 250_000, 5.0)
        twin._log_progress(ReadTask(path="b.csv", size=100 << 20), 250_000, 5.0)
    first, second = [r.getMessage() for r in caplog.records]
    assert "1 of 4 tasks, 250000 rows, 25% of 400 MB" in first
    assert "2 of 4 tasks, 500000 rows, 50% of 400 MB" in second
    rate = int(second.split(" rows/s")[0].rsplit(", ", 1)[1].replace(",", ""))
    assert 45_000 <= rate <= 50_000  # 500,000 rows in 10 s and a little
    assert second.endswith("ETA 10s")  # half done after 10 s


@pytest.mark.slow
def test_score_job_never_imports_tf_transform_and_reports_its_fixed_costs(clicks_run, tmp_path):
    """The whole job in a fresh process: exact counts, no tf.Transform/tf_keras/TensorFlow __init__, a breakdown."""
    day = make_clicks(700, seed=5, first_id=50_000)
    (tmp_path / "in").mkdir()
    csv = write_csv(day, tmp_path / "in" / "day.csv")
    out = tmp_path / "scores"
    code = ("import sys, json; from ctrflow.beam_jobs.scoring import job as score; "
            f"score.run(['--model', {clicks_run['model']!r}, '--input', {csv!r}, '--date', '2026-11-21', "
            f"'--output', {str(out)!r}]); "
            "from ctrflow.common.compat.tensorflow import is_deferred; "
            "print(json.dumps({**{m: m in sys.modules for m in ('tensorflow_transform', 'tf_keras', 'keras')}, "
            "'tensorflow_init_ran': not is_deferred()}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    if compat.public_api_only():  # a plain import tensorflow, whose __init__ imports a Keras
        assert (got["tensorflow_transform"], got["tensorflow_init_ran"]) == (False, True)
    else:
        assert got == {"tensorflow_transform": False, "tf_keras": False, "keras": False, "tensorflow_init_ran": False}
    assert "rows/s" in proc.stderr
    day = out / "date=2026-11-21"
    latest = (day / "_LATEST").read_text().strip() if (day / "_LATEST").exists() else ""
    manifest = json.loads((day / latest / "manifest.json").read_text())
    assert (manifest["input_rows"], manifest["scored_rows"], manifest["rejected_rows"]) == (700, 700, 0)
    assert manifest["beam_options"] == [f"--direct_num_workers={os.cpu_count() or 1}",
                                        "--direct_running_mode=multi_threading"]
    d = manifest["durations_s"]
    assert d["process_start"] > 0 and d["model_load_background"] > 0
    parts = d["pipeline_parts"]
    assert set(parts) == {"start", "read", "finalize"} and min(parts.values()) >= 0
    assert abs(sum(parts.values()) - d["pipeline"]) < 0.5


def test_import_tensorflow_from_a_second_thread_waits_for_the_first():
    """While the preload thread imports TensorFlow, another caller gets the finished module, not a partial one."""
    code = (
        "import sys, threading, time\n"
        "from ctrflow.common.compat.tensorflow import import_tensorflow\n"
        "threading.Thread(target=import_tensorflow, daemon=True).start()\n"
        "while 'tensorflow' not in sys.modules: time.sleep(0.001)\n"
        "tf = import_tensorflow()\n"
        "print(hasattr(tf, 'config') and hasattr(tf, 'saved_model'))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.skipif(compat.public_api_only(), reason="tf_keras' layer traces are a trick (tests/test_compat.py)")
def test_the_export_holds_the_transform_graph_once_for_all_signatures(clicks_run):
    """serving_default, score_and_ids and serve_tf_examples call one traced transform (model.export).

    The transform graph is the library's functions with vocabulary lookups:
    TFT's loaded copy and the shared ``transform``, where tracing it per
    signature and tf_keras' layer traces made six.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(clicks_run["model"], "export", "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    library = saved.meta_graphs[0].graph_def.library
    with_lookups = [f.signature.name for f in library.function
                    if any(n.op == "LookupTableFindV2" for n in f.node_def)]
    assert len(with_lookups) == 2, with_lookups
    by_name = {f.signature.name: f for f in library.function}

    def calls(name: str) -> set[str]:
        out = set()
        for n in by_name[name].node_def:
            out.update(v.func.name for v in n.attr.values() if v.func.name)
        return out

    transform_callers = {name: calls(name) for name in by_name
                         if any(name.startswith(f"__inference_{s}_")
                                for s in ("serving_default", "score_and_ids", "serve_tf_examples"))}
    shared = set.intersection(*(c for c in transform_callers.values() if c))
    assert len([c for c in transform_callers.values() if c]) == 3 and len(shared) == 1, transform_callers


def test_the_export_serves_its_transform_alone(clicks_run):
    """``loaded.transform`` (typed raw -> transformed features) gives the ids ``score_and_ids`` returns."""
    import tensorflow as tf

    loaded = tf.saved_model.load(os.path.join(clicks_run["model"], "export"))
    fn = loaded.signatures["score_and_ids"]
    specs = fn.structured_input_signature[1]
    rows = clicks_run["eval_df"].head(5)
    raw = {n: tf.constant(rows[n].astype(str).tolist() if s.dtype == tf.string else rows[n].astype("float32"),
                          s.dtype) for n, s in specs.items()}
    scored = fn(**raw)
    transformed = loaded.transform(raw)
    ids = [n for n in scored if n != "score"]
    assert ids
    for n in ids:
        t = transformed[n]
        t = t.to_tensor(-1) if isinstance(t, tf.RaggedTensor) else t
        assert t.numpy().tolist() == scored[n].numpy().tolist(), n

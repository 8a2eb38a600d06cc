"""One file API: paths that may be gs:// are read and written through Beam FileSystems or tf.io.gfile.

Two checks: every package module is read with ``ast`` for local-only file calls
(``open``, ``os.makedirs``, ...; the few that only ever see local paths are listed
with the reason), and the trainer's config reader, callbacks and evaluation
plots really write to a non-local filesystem (TensorFlow's ``ram://``).
"""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDERS = ("common", "schemas", "pipeline", "model", "beam_jobs", "cli")
LOCAL_ONLY = {("open",), ("os", "makedirs"), ("os", "mkdir"), ("os", "rmdir"), ("os", "remove"), ("os", "listdir"),
              ("os", "rename"), ("os", "path", "exists"), ("os", "path", "isfile"), ("os", "path", "isdir"),
              ("shutil", "rmtree"), ("shutil", "copy"), ("shutil", "move")}
ALLOWED = {  # (module, call): why the path is always local
    ("beam_jobs/worker_wheel.py", "open"): "reads the installed package files in the local site-packages",
    ("beam_jobs/runners.py", "os.path.exists"): "the checkout's setup.py beside this very file",
    ("beam_jobs/outputs/date_partitions.py", "os.makedirs"): "guarded by date_partitions._is_local",
    ("beam_jobs/outputs/date_partitions.py", "os.rmdir"): "guarded by date_partitions._is_local",
    ("beam_jobs/outputs/manifest.py", "open"): "reads /proc/self/stat and /proc/uptime (process start time)",
    ("model/serving_layout.py", "os.rename"): "the local branch of publish_version (gs:// is written in place)",
}


def _dotted(node: ast.AST) -> tuple[str, ...]:
    if isinstance(node, ast.Name):
        return (node.id,)
    if isinstance(node, ast.Attribute):
        return _dotted(node.value) + (node.attr,)
    return ()


def _local_file_calls(path: str) -> list[tuple[int, str]]:
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    return [(n.lineno, ".".join(_dotted(n.func))) for n in ast.walk(tree)
            if isinstance(n, ast.Call) and _dotted(n.func) in LOCAL_ONLY]


def _modules() -> list[str]:
    return sorted(os.path.relpath(os.path.join(here, f), ROOT) for d in FOLDERS
                  for here, _, files in os.walk(os.path.join(ROOT, d)) for f in files if f.endswith(".py"))


@pytest.mark.parametrize("path", _modules())
def test_no_local_only_file_calls_on_user_paths(path):
    for line, call in _local_file_calls(path):
        assert (path, call) in ALLOWED, (f"{path}:{line}: {call}() on a path that may be gs://; use "
                                         "FileSystems or tf.io.gfile")


def test_the_check_finds_open_and_makedirs(tmp_path):
    (tmp_path / "m.py").write_text("import os\nos.makedirs(p)\nwith open(p) as f: pass\n")
    assert _local_file_calls(str(tmp_path / "m.py")) == [(2, "os.makedirs"), (3, "open")]


def test_config_callbacks_and_plots_write_to_a_non_local_filesystem():
    import numpy as np
    import tensorflow as tf

    from ctrflow.model import metrics as mt
    from ctrflow.model.callbacks import make_callbacks
    from ctrflow.model.config import ModelConfig
    from ctrflow.model.evaluate import plot

    root = "ram://ctrflow-file-api"
    with tf.io.gfile.GFile(f"{root}/config.yaml", "w") as f:
        f.write("model: wide_deep\nembedding_dim: 8\nhidden_units: [32, 16]\n")
    config = ModelConfig.from_yaml(f"{root}/config.yaml")
    assert (config.model, config.embedding_dim, config.hidden_units) == ("wide_deep", 8, (32, 16))

    make_callbacks(f"{root}/model", patience=1, resume=False)
    assert tf.io.gfile.isdir(f"{root}/model/checkpoints")
    assert not os.path.exists("ram:")  # nothing went to a local folder named after the scheme

    labels, probs = np.array([0, 1, 0, 1, 1]), np.array([0.1, 0.8, 0.3, 0.6, 0.9])
    tf.io.gfile.makedirs(f"{root}/eval")
    paths = plot(labels, probs, mt.calibration_bins(labels, probs, 2), 1.0, f"{root}/eval")
    assert paths == [f"{root}/eval/roc.png", f"{root}/eval/calibration.png"]
    for p in paths:
        assert tf.io.gfile.GFile(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n"

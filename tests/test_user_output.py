"""``ctrflow`` prints no warning- or error-looking line that asks nothing of the user (issue 29, item 7).

Each pattern below was printed by a run from a fresh clone, for reasons that were ctrflow's (a retraced
``tf.function``, a warning logged twice, ``shuffle=True`` on a tf.data pipeline, an epoch ending as it should)
or a library's start-up notices. The jobs run in a child process through the console entry point, as a user
runs them, so TensorFlow's C++ lines written to file descriptor 2 are seen too.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ctrflow.common.logs import NativeNoticeFilter

UNWANTED = {
    "absl::InitializeLog": "absl's notice, before TensorFlow's C++ logging is set up",
    "cuInit": "TensorFlow's CUDA probe on a machine without a CUDA driver",
    "Could not find cuda drivers": "TensorFlow's CUDA notice",
    "oneDNN": "TensorFlow's oneDNN notices",
    "ran out of data": "Keras, at the end of a one-pass epoch",
    "shuffle=True": "Keras: shuffle=True is ignored for a tf.data.Dataset",
    "retracing": "tf.function retracing of predict_split",
    "WARNING:tensorflow:": "TensorFlow's own handler: each TensorFlow warning printed twice",
    "Resource module is not available": "Beam's RunInference, on every model load",
}


def _ctrflow(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell has it
    return subprocess.run([sys.executable, "-m", "ctrflow.cli", *args], capture_output=True, text=True, env=env,
                          timeout=1200)


def _unwanted(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if any(pattern in line for pattern in UNWANTED)]


@pytest.mark.slow
def test_train_and_score_print_only_what_asks_something(clicks_run, tmp_path):
    model = str(tmp_path / "model")
    # two members, 300-row evaluation batches (the last one short), Platt scaling: what retraced before
    train = _ctrflow("train", "--data", clicks_run["data_root"], "--output", model, "--epochs", "2",
                     "--batch-size", "256", "--eval-batch-size", "300", "--ensemble", "2", "--cache")
    assert train.returncode == 0, train.stderr
    assert "INFO training deepfm" in train.stderr  # stderr was captured
    assert _unwanted(train.stderr) == []

    score = _ctrflow("score", "--model", model, "--input", clicks_run["eval_csv"], "--date", "2026-11-21",
                     "--output", str(tmp_path / "scores"))
    assert score.returncode == 0, score.stderr
    assert "1000 scored" in score.stderr
    assert _unwanted(score.stderr) == []


def test_native_notice_filter_drops_only_the_known_notices():
    lines = [
        b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        b"I0000 00:00:1796695267.156286   15082 port.cc:153] oneDNN custom operations are on. You may see ...",
        b"E0000 00:00:1796695271.835834   15082 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error",
        b"I0000 00:00:1796695267.157277   15082 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
        b"GPU will not be used.",
        b"E0000 00:00:1796695271.835834   15082 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error",
        b"E0000 00:00:1796695276.412431   15082 util.cc:131] oneDNN supports DT_INT64 only on platforms with "
        b"AVX-512. Falling back to the default Eigen-based implementation if present.",
        b"E0000 00:00:1796695276.412431   15082 util.cc:131] Some other error",
        b"02:01:11 WARNING a warning of ours",
    ]
    notices = NativeNoticeFilter()
    kept = [line for line in lines if notices.keep(line)]
    # a failed cuInit stays while a CUDA driver library may be there, and goes once TensorFlow said there is none
    assert kept == [lines[2], lines[6], lines[7]]


def test_native_notice_filter_process_passes_everything_else(tmp_path):
    """The filter as ``native_notices_filtered`` runs it: a child process between a pipe and stderr."""
    from ctrflow.common import logs

    data = (b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
            b"line one\n\xff binary \xfe\n" + b"x" * 200_000 + b"\nno newline at the end")
    done = subprocess.run([sys.executable, "-I", "-S", logs.__file__], input=data, capture_output=True,
                          timeout=60)
    assert done.returncode == 0
    assert done.stdout == data.split(b"\n", 1)[1]

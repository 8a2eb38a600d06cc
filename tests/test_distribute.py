"""``ctrflow train`` on tf.distribute, for real: two worker processes on 127.0.0.1 with ``TF_CONFIG``, mirrored
over two logical CPUs, a killed worker restarted, and one step on 1 vs 2 replicas.

Each training runs in its own process (``python -m ctrflow.cli train``): a strategy must exist before TensorFlow
runs any op, and ``CTRFLOW_LOGICAL_CPUS`` must split the CPU before TensorFlow initialises.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.distribute import free_ports, training_env

pytestmark = [pytest.mark.slow, pytest.mark.extended]

CENSUS = Path(__file__).resolve().parents[1] / "data" / "census"
TRAIN_ROWS, EVAL_ROWS = 6000, 3000
# no dropout: each replica draws its own dropout masks, which alone moves a 1-epoch AUC by ~0.004 here; without
# it 1 process, 2 workers and 2 mirrored devices train on the same global batches to the same weights
TRAIN = ["--epochs", "1", "--ensemble", "1", "--batch-size", "256", "--seed", "7", "--verbose", "2",
         "--model", "deepfm", "--dropout", "0"]
AUC_TOLERANCE = 0.003


def _train_cmd(data: str, output: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "ctrflow.cli", "train", "--data", data, "--output", str(output), *TRAIN, *flags]


def _tf_configs(workers: int) -> list[str]:
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(workers)]}
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}) for i in range(workers)]


def _start_workers(cmd: list[str], configs: list[str], logs: Path, tag: str) -> list[subprocess.Popen]:
    procs = []
    for i, config in enumerate(configs):
        log = open(logs / f"{tag}-worker{i}.log", "w")
        procs.append(subprocess.Popen(cmd, env=training_env(TF_CONFIG=config), stdout=log, stderr=subprocess.STDOUT))
    return procs


def _wait_all(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    deadline = time.time() + timeout
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=max(1.0, deadline - time.time())))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    return codes


def _eval_auc(model_dir: Path, data: str) -> float:
    """The export's AUC on the eval split, scored by ``ctrflow evaluate`` (the SavedModel loaded afresh)."""
    from ctrflow.model import evaluate

    return evaluate.run(["--model", str(model_dir), "--data", data, "--importance-rows", "0",
                         "--output", str(model_dir.parent / f"{model_dir.name}-evaluation")])["auc"]


@pytest.fixture(scope="module")
def census(tmp_path_factory):
    """Preprocessed census rows (two training files, so two workers shard by file) and a single-process run."""
    from ctrflow.beam_jobs.preprocess import job as preprocess
    from ctrflow.pipeline.artifacts import live_dir

    root = tmp_path_factory.mktemp("census")
    train_lines = (CENSUS / "adult.data").read_text().splitlines()[:TRAIN_ROWS]
    test_lines = (CENSUS / "adult.test").read_text().splitlines()[:EVAL_ROWS + 1]  # its first line is a comment
    (root / "adult.data").write_text("\n".join(train_lines) + "\n")
    (root / "adult.test").write_text("\n".join(test_lines) + "\n")
    schema = Path(__file__).resolve().parents[1] / "schemas" / "census.yaml"
    preprocess.run(["--schema", str(schema), "--train", str(root / "adult.data"), "--eval", str(root / "adult.test"),
                    "--output", str(root / "data"), "--num-shards", "2"])
    data = str(root / "data")
    single = root / "single"
    done = subprocess.run(_train_cmd(data, single), env=training_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {"root": root, "data": data, "live": live_dir(data), "single": single,
            "single_auc": _eval_auc(single, data)}


def test_one_step_on_two_mirrored_replicas_equals_one_device():
    """Same weights, same global batch (100 rows in batches of 64: a short last batch too), two epochs: 1 device vs
    2 mirrored logical CPUs end at the same weights, for lazy Adam, sparse FTRL, R-Drop and a wide FTRL."""
    script = Path(__file__).with_name("distribute_step_check.py")
    configs = [{}, {"optimizer": "ftrl"}, {"rdrop_alpha": 1.0}, {"model": "wide_deep", "wide_optimizer": "ftrl"}]
    done = subprocess.run([sys.executable, str(script), json.dumps(configs)],
                          env=training_env(CTRFLOW_LOGICAL_CPUS="2"), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for config, result in zip(configs, results):
        assert result["replicas"] == 2
        assert result["iterations"] == [4, 4], config  # 2 epochs x 2 steps on both, no extra step
        assert result["max_abs_diff"] < 1e-5, (config, result)
        assert result["indexed_slices"], config  # embedding gradients stay row-sparse through the all-reduce


def test_two_workers_with_tf_config_train_one_export_as_good_as_one_process(census, tmp_path):
    output = tmp_path / "model"
    procs = _start_workers(_train_cmd(census["data"], output), _tf_configs(2), tmp_path, "mw")
    codes = _wait_all(procs, timeout=360)
    logs = {p.name: p.read_text() for p in tmp_path.glob("mw-*.log")}
    assert codes == [0, 0], {k: v[-3000:] for k, v in logs.items()}
    assert "training data sharded by record" in logs["mw-worker0.log"]
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["distribute"] == {"strategy": "multi-worker", "replicas": 2, "workers": 2, "worker_index": 0,
                                     "global_batch_size": 256, "per_replica_batch_size": 128,
                                     "devices": metrics["distribute"]["devices"]}
    assert json.loads((output / "config.json").read_text())["distribute"]["strategy"] == "multi-worker"
    single = json.loads((census["single"] / "metrics.json").read_text())
    assert set(os.listdir(output)) == set(os.listdir(census["single"]))  # the chief's files only: no worker folder
    assert abs(metrics["auc"] - single["auc"]) < AUC_TOLERANCE
    assert abs(_eval_auc(output, census["data"]) - census["single_auc"]) < AUC_TOLERANCE


def test_mirrored_over_two_logical_cpus_matches_one_process(census, tmp_path):
    output = tmp_path / "model"
    done = subprocess.run(_train_cmd(census["data"], output), env=training_env(CTRFLOW_LOGICAL_CPUS="2"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    metrics = json.loads((output / "metrics.json").read_text())
    assert (metrics["distribute"]["strategy"], metrics["distribute"]["replicas"]) == ("mirrored", 2)
    assert metrics["distribute"]["per_replica_batch_size"] == 128
    assert abs(_eval_auc(output, census["data"]) - census["single_auc"]) < AUC_TOLERANCE


def test_a_killed_worker_restarted_with_the_same_tf_config_finishes_the_job(census, tmp_path):
    """Worker 1 is killed (SIGKILL) in epoch 2 of 3; the chief's collectives fail, and the cluster manager (here,
    the test) restarts both with the same TF_CONFIG: they resume from the epoch-1 backup and finish epochs 2-3."""
    output = tmp_path / "model"
    cmd = _train_cmd(census["data"], output, "--steps-per-epoch", "40", "--patience", "5")
    cmd[cmd.index("--epochs") + 1] = "3"
    configs = _tf_configs(2)
    procs = _start_workers(cmd, configs, tmp_path, "first")
    backup = output / "checkpoints" / "backup" / "training_metadata.json"
    deadline = time.time() + 240
    while not (backup.exists() and json.loads(backup.read_text() or "{}").get("epoch") == 1):
        assert time.time() < deadline and all(p.poll() is None for p in procs), "no epoch-1 backup"
        time.sleep(0.2)
    procs[1].send_signal(signal.SIGKILL)
    procs[1].wait()
    try:  # the chief notices its peer is gone and fails; a cluster manager would restart it too
        procs[0].wait(timeout=90)
    except subprocess.TimeoutExpired:
        procs[0].kill()
        procs[0].wait()
    assert not (output / "metrics.json").exists()
    restarted = _start_workers(cmd, configs, tmp_path, "again")
    codes = _wait_all(restarted, timeout=300)
    logs = {p.name: p.read_text() for p in tmp_path.glob("again-*.log")}
    assert codes == [0, 0], {k: v[-3000:] for k, v in logs.items()}
    assert "Epoch 1/3" not in logs["again-worker0.log"] and "Epoch 3/3" in logs["again-worker0.log"]
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2  # epochs 2 and 3 after the restart
    assert not [p for p in os.listdir(output) if p.startswith(".worker")]
    assert not (output / "checkpoints" / "backup").exists()  # removed once the job finished

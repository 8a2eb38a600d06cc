"""The Beam jobs on a second engine: Beam's DaskRunner against a dask.distributed cluster of 2 worker processes.

Same input, DirectRunner vs DaskRunner: identical scores, manifest counts, rejected rows and TFRecords (but
for the last bit of a zscore, see ``_assert_same_examples``). Plus the runner aliases and a runner's own
flags (``beam_jobs.runner_names``).
"""
from __future__ import annotations

import glob
import os

import numpy as np
import pyarrow.dataset as ds
import pytest

from ctrflow.beam_jobs.options import unknown_to_beam
from ctrflow.beam_jobs.runner_names import beam_runner_name, runner_path
from ctrflow.common.errors import OptionsError
from tests.conftest import CLICKS_SCHEMA, make_clicks, write_csv

DASK = "apache_beam.runners.dask.dask_runner.DaskRunner"
DATE = "2026-11-21"


# ----------------------------------------------------------------------------- fast: names and flags
def test_runner_aliases_resolve_case_insensitively_and_beam_gets_what_it_can_resolve():
    for name in ("DaskRunner", "dask", "DASK", "daskrunner", DASK):
        assert runner_path(name) == DASK and beam_runner_name(name) == DASK
    for name, path in (("direct", "apache_beam.runners.direct.direct_runner.DirectRunner"),
                       ("DataflowRunner", "apache_beam.runners.dataflow.dataflow_runner.DataflowRunner"),
                       ("prism", "apache_beam.runners.portability.prism_runner.PrismRunner"),
                       ("FLINK", "apache_beam.runners.portability.flink_runner.FlinkRunner"),
                       ("SparkRunner", "apache_beam.runners.portability.spark_runner.SparkRunner"),
                       ("portable", "apache_beam.runners.portability.portable_runner.PortableRunner")):
        assert runner_path(name) == path
        assert beam_runner_name(name) == name  # Beam resolves its listed runners' short names itself
    with pytest.raises(OptionsError, match="--runner Dusk: unknown runner; give one of .*DaskRunner"):
        runner_path("Dusk")


def test_a_runners_own_flags_pass_the_filter_and_an_unknown_flag_still_stops_the_job(capsys):
    from ctrflow.beam_jobs.scoring import job as score

    assert unknown_to_beam(["--runner", "dask", "--dask_client_address", "tcp://127.0.0.1:1"]) == []
    assert unknown_to_beam(["--dask_client_address", "tcp://127.0.0.1:1", "--dask_npartitions", "2"]) == []
    with pytest.raises(SystemExit) as e:
        score.run(["--model", "m", "--input", "i", "--output", "o", "--date", DATE, "--runner", "DaskRunner",
                   "--dask_client_address", "tcp://127.0.0.1:1", "--dask_clinet_name", "x"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "unknown flag --dask_clinet_name (did you mean --dask_client_name?)" in err[-1]


def test_the_dask_runner_is_ctrflows_fixed_one_and_refused_in_one_line_without_the_fix(monkeypatch):
    from ctrflow.beam_jobs.runners import new_pipeline
    from ctrflow.common import compat

    runner = new_pipeline(["--runner", "dask", "--dask_client_address", "tcp://127.0.0.1:1"]).runner
    assert type(runner).__module__ == "ctrflow.common.compat.beam" and type(runner).__name__ == "DaskRunner"
    assert compat.paths_used()["beam.dask_runner"] == "trick"
    import apache_beam as beam

    p = new_pipeline(["--runner", "dask", "--dask_client_address", "tcp://127.0.0.1:1"])
    _ = p | "FromBigQuery" >> beam.Impulse()  # what a bigquery:// read starts with
    with pytest.raises(OptionsError, match=r"^--runner DaskRunner cannot run the step 'FromBigQuery' \(Impulse\): "
                                           r"Beam's DaskRunner translates only Create, ParDo, GroupByKey and Flatten$"):
        p.run()  # refused before connecting to the (absent) cluster
    monkeypatch.setenv(compat.PUBLIC_API_ONLY, "1")
    with pytest.raises(OptionsError, match=r"^--runner DaskRunner: Beam's own DaskRunner mixes a step's tagged "
                                           r"outputs and runs only the pipeline's last branch;"):
        new_pipeline(["--runner", "DaskRunner"])
    assert compat.paths_used()["beam.dask_runner"] == "public"


# ----------------------------------------------------------------------------- slow: the jobs on a cluster
@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        assert len(cluster.workers) == 2
        yield cluster.scheduler_address


def _dask_args(address: str) -> list[str]:
    return ["--runner", "DaskRunner", "--dask_client_address", address]


def _on_workers(address: str, run):
    """``run()``'s result, and the workers the cluster's scheduler saw run its tasks meanwhile."""
    import distributed

    with distributed.Client(address) as client, distributed.get_task_stream(client=client) as stream:
        result = run()
    return result, {task["worker"] for task in stream.data}


def _days(tmp_path, n_bad: int) -> str:
    """Two CSV files (two read tasks) of one day, the second with ``n_bad`` unparseable ages."""
    folder = tmp_path / "in"
    folder.mkdir()
    write_csv(make_clicks(150, seed=21, first_id=0), folder / "a.csv")
    bad = make_clicks(150, seed=22, first_id=1000)
    bad["age"] = bad["age"].astype(object)
    bad.loc[:n_bad - 1, "age"] = "not-a-number"
    write_csv(bad, folder / "b.csv")
    return str(folder / "*.csv")


def _rejected(folder: str) -> list[str]:
    """The rejected rows under ``folder``: a score run's rejected-*.jsonl, a preprocess run's rejected/<split>-*."""
    files = glob.glob(os.path.join(folder, "rejected*.jsonl")) + glob.glob(os.path.join(folder, "rejected", "*"))
    return sorted(line for f in files for line in open(f))


def _counts(manifest: dict, keys: tuple[str, ...]) -> dict:
    return {k: manifest[k] for k in keys}


@pytest.mark.slow
@pytest.mark.extended
def test_score_on_dask_writes_what_the_direct_runner_writes(clicks_run, dask_cluster, tmp_path):
    from ctrflow.beam_jobs.scoring import job as score

    pattern = _days(tmp_path, n_bad=7)
    runs = {}
    workers = {}
    for name, extra in (("direct", []), ("dask", _dask_args(dask_cluster))):
        argv = ["--model", clicks_run["model"], "--input", pattern, "--date", DATE, "--output", str(tmp_path / name),
                "--max-rejected-fraction", "0.1", *extra]
        [m], workers[name] = _on_workers(dask_cluster, lambda: score.run(argv))
        scores = ds.dataset(m["output"], format="parquet", exclude_invalid_files=True).to_table().to_pandas()
        runs[name] = m, scores.sort_values("request_id").reset_index(drop=True), _rejected(m["output"])
    (direct, direct_scores, direct_rejected), (dask, dask_scores, dask_rejected) = runs["direct"], runs["dask"]
    keys = ("input_rows", "scored_rows", "rejected_rows", "duplicate_id_rows")
    assert _counts(direct, keys) == _counts(dask, keys) == {"input_rows": 300, "scored_rows": 293,
                                                            "rejected_rows": 7, "duplicate_id_rows": 0}
    assert list(direct_scores["request_id"]) == sorted([*range(7 + 1000, 1150), *range(150)])
    assert direct_scores.equals(dask_scores)
    assert len(direct_rejected) == 7 and direct_rejected == dask_rejected
    assert dask["durations_s"]["pipeline_parts"] == {"unavailable": "DaskRunnerResult reports no metrics"}
    assert dask["compat"]["paths_used"]["beam.dask_runner"] == "trick"
    assert not workers["direct"] and len(workers["dask"]) == 2  # both worker processes ran tasks


def _examples(folder: str, split: str) -> list[dict]:
    """Every tf.Example of a split as {feature: values}, sorted: the same list whatever the sharding."""
    import tensorflow as tf
    files = sorted(glob.glob(os.path.join(folder, split, "*")))
    assert files, f"no {split} files in {folder}"
    rows = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        features = tf.train.Example.FromString(record.numpy()).features.feature
        rows.append({k: tuple(v.float_list.value) or tuple(v.int64_list.value) or tuple(v.bytes_list.value)
                     for k, v in features.items()})
    return sorted(rows, key=lambda r: sorted(r.items()))


def _assert_same_examples(direct: list[dict], dask: list[dict]) -> None:
    """Identical, except a zscore-scaled value may differ in its last float32 bit.

    The mean and variance a zscore divides by are float sums whose partial results the runner merges in the
    order its bundles finish; over Dask's worker processes that order varies from run to run (seen: 5 of 295
    train rows 1 ulp apart, relative 1e-7). Every vocabulary, bucket and other value is identical.
    """
    assert len(direct) == len(dask)
    exact = [{k: v for k, v in r.items() if not k.endswith("__scaled")} for r in direct]
    assert exact == [{k: v for k, v in r.items() if not k.endswith("__scaled")} for r in dask]
    scaled = sorted(k for k in direct[0] if k.endswith("__scaled"))
    assert scaled == ["age__scaled"]
    a = np.array([r[k] for r in direct for k in scaled], dtype=np.float32)
    b = np.array([r[k] for r in dask for k in scaled], dtype=np.float32)
    assert np.all(np.abs(a - b) <= 2 * np.spacing(np.abs(a)))


@pytest.mark.slow
@pytest.mark.extended
def test_preprocess_on_dask_writes_what_the_direct_runner_writes(dask_cluster, tmp_path):
    from ctrflow.beam_jobs.preprocess import job as preprocess
    from ctrflow.pipeline.artifacts import live_dir

    schema = tmp_path / "clicks.yaml"
    schema.write_text(CLICKS_SCHEMA)
    train = _days(tmp_path, n_bad=5)
    eval_csv = write_csv(make_clicks(200, seed=23, first_id=5000), tmp_path / "eval.csv")
    runs = {}
    workers = {}
    for name, extra in (("direct", []), ("dask", _dask_args(dask_cluster))):
        out = tmp_path / name
        argv = ["--schema", str(schema), "--train", train, "--eval", eval_csv, "--output", str(out),
                "--max-rejected-fraction", "0.1", *extra]
        m, workers[name] = _on_workers(dask_cluster, lambda: preprocess.run(argv))
        runs[name] = m, live_dir(str(out))
    (direct, direct_dir), (dask, dask_dir) = runs["direct"], runs["dask"]
    keys = ("input_rows", "output_rows", "rejected_rows")
    counts = {s: _counts(direct["splits"][s], keys) for s in ("train", "eval")}
    assert counts == {"train": {"input_rows": 300, "output_rows": 295, "rejected_rows": 5},
                      "eval": {"input_rows": 200, "output_rows": 200, "rejected_rows": 0}}
    assert {s: _counts(dask["splits"][s], keys) for s in counts} == counts
    assert dask["durations_s"]["pipeline_parts"] == {"unavailable": "DaskRunnerResult reports no metrics"}
    assert not workers["direct"] and len(workers["dask"]) == 2
    assert _rejected(direct_dir) == _rejected(dask_dir) and len(_rejected(direct_dir)) == 5
    for split in ("train", "eval"):
        _assert_same_examples(_examples(direct_dir, split), _examples(dask_dir, split))
    direct_vocab = sorted(glob.glob(os.path.join(direct_dir, "transform_fn", "assets", "*")))
    assert direct_vocab and [open(f, "rb").read() for f in direct_vocab] == [
        open(f.replace(direct_dir, dask_dir), "rb").read() for f in direct_vocab]

"""Runners: Dataflow options stage this project; the DirectRunner's multi-process mode keeps every count."""
import os
import tarfile

import pyarrow as pa
import pytest
from apache_beam.options.pipeline_options import GoogleCloudOptions, SetupOptions, StandardOptions

from ctrflow.beam_jobs.options import PreprocessOptions
from ctrflow.beam_jobs.runners import new_pipeline, pipeline_options, project_setup_file
from ctrflow.common import compat
from tests.conftest import CLICKS_SCHEMA, make_clicks, write_csv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATAFLOW = ["--runner", "DataflowRunner", "--project", "p", "--region", "r", "--temp_location", "gs://b/tmp"]


def test_dataflow_gets_the_project_setup_file_and_other_runners_keep_their_options():
    options = pipeline_options(DATAFLOW)
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    assert options.view_as(GoogleCloudOptions).region == "r"
    assert options.view_as(SetupOptions).setup_file == project_setup_file() == os.path.join(ROOT, "setup.py")
    mine = pipeline_options(DATAFLOW + ["--setup_file", "/elsewhere/setup.py"])
    assert mine.view_as(SetupOptions).setup_file == "/elsewhere/setup.py"
    assert pipeline_options(["--direct_num_workers", "2"]).view_as(SetupOptions).setup_file is None
    flink = pipeline_options(["--runner", "FlinkRunner", "--flink_master", "host:8081"])
    assert flink.get_all_options()["flink_master"] == "host:8081"


@pytest.mark.skipif(compat.public_api_only(), reason="a trick path (tests/test_compat.py compares both paths)")
def test_local_jobs_run_on_the_fn_api_runner_without_offering_the_pipeline_to_prism(monkeypatch):
    """The DirectRunner would first try Prism (a download from GitHub); ctrflow's local jobs go straight on."""
    import apache_beam as beam
    from apache_beam.runners.portability import prism_runner
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.testing.util import assert_that, equal_to

    def no_prism(*args, **kwargs):
        raise AssertionError("the pipeline was offered to Prism")

    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", no_prism)
    for args in ([], ["--runner", "DirectRunner", "--direct_num_workers", "2",
                      "--direct_running_mode", "multi_threading"]):
        p = new_pipeline(args)
        assert isinstance(p.runner, fn_runner.FnApiRunner), args
        with p:
            counted = p | beam.Create(range(10)) | beam.combiners.Count.Globally()
            assert_that(counted, equal_to([10]))
    assert type(new_pipeline(["--runner", "PrismRunner"]).runner).__name__ == "PrismRunner"
    assert type(new_pipeline(["--streaming"]).runner).__name__ == "SwitchingDirectRunner"


def test_the_preprocess_pipeline_builds_for_dataflow_and_stages_every_package(tmp_path):
    import apache_beam as beam
    from apache_beam.runners.portability.stager import Stager

    from ctrflow.beam_jobs.input.plan import plan_reads
    from ctrflow.beam_jobs.preprocess import job as preprocess
    from ctrflow.schemas import loads_schema

    schema = loads_schema(CLICKS_SCHEMA, "clicks.yaml")
    csv = write_csv(make_clicks(50, seed=1), tmp_path / "t.csv")
    tasks = {"train": plan_reads(schema, [csv], ["age"])[0], "eval": []}
    options = PreprocessOptions(schema="s", train=(csv,), output="gs://b/out")
    # no Dataflow service here: a localhost endpoint skips Beam's online checks of the project and bucket
    beam_options = pipeline_options(DATAFLOW + ["--dataflow_endpoint", "http://localhost:1"])
    p = beam.Pipeline(options=beam_options)  # built with the DataflowRunner, never run
    assert type(p.runner).__name__ == "DataflowRunner"
    with preprocess.transform_context(str(tmp_path / "tft")):
        preprocess.build_pipeline(p, schema, tasks, "gs://b/out", options)
    staged = tmp_path / "staging"
    staged.mkdir()
    Stager.create_job_resources(beam_options, str(staged))
    [sdist] = [f for f in os.listdir(staged) if f.endswith(".tar.gz")]
    names = {n.split("/", 1)[1] for n in tarfile.open(staged / sdist).getnames() if "/" in n}
    for module in ("beam_jobs/input/plan.py", "beam_jobs/input/bigquery.py", "beam_jobs/preprocess/splits.py",
                   "beam_jobs/input/transforms.py",
                   "pipeline/parsing.py", "pipeline/transform.py", "model/export.py", "schemas/loader.py",
                   "schemas/census.yaml", "cli/commands.py", "setup.py"):
        assert module in names, module


@pytest.mark.slow
def test_multi_process_direct_runner_keeps_counts_and_the_split(tmp_path):
    from ctrflow.beam_jobs.preprocess import job as preprocess
    from ctrflow.beam_jobs.preprocess.splits import eval_mask

    (tmp_path / "s.yaml").write_text(CLICKS_SCHEMA)
    df = make_clicks(2000, seed=5)
    half = len(df) // 2
    write_csv(df.iloc[:half], tmp_path / "a.csv")
    write_csv(df.iloc[half:], tmp_path / "b.csv")
    m = preprocess.run(["--schema", str(tmp_path / "s.yaml"), "--train", str(tmp_path / "*.csv"),
                        "--eval-fraction", "0.25", "--split-key", "request_id", "--output", str(tmp_path / "out"),
                        "--direct_num_workers", "2", "--direct_running_mode", "multi_processing"])
    expected_eval = int(eval_mask(pa.array(df["request_id"].astype(str)), 0.25).sum())
    train, ev = m["splits"]["train"], m["splits"]["eval"]
    assert (ev["input_rows"], ev["output_rows"]) == (expected_eval, expected_eval)
    assert (train["input_rows"], train["output_rows"]) == (2000 - expected_eval, 2000 - expected_eval)
    assert m["beam_options"] == ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"]


def test_staging_keeps_what_the_user_named_and_adds_ctrflow_beside_other_packages(tmp_path):
    image = pipeline_options(DATAFLOW + ["--sdk_container_image", "gcr.io/p/ctrflow:1"])
    assert (image.view_as(SetupOptions).setup_file, image.view_as(SetupOptions).extra_packages) == (None, None)
    mine = str(tmp_path / "ctrflow-9.9-py3-none-any.whl")
    own = pipeline_options(DATAFLOW + ["--extra_package", mine])
    assert (own.view_as(SetupOptions).setup_file, own.view_as(SetupOptions).extra_packages) == (None, [mine])
    udf = str(tmp_path / "my_udfs-1.0.tar.gz")
    other = pipeline_options(DATAFLOW + ["--extra_package", udf])
    assert other.view_as(SetupOptions).setup_file == os.path.join(ROOT, "setup.py")
    assert other.view_as(SetupOptions).extra_packages == [udf]
    assert pipeline_options(["--runner", "direct"]).view_as(SetupOptions).setup_file is None


def test_the_installed_wheel_builder_refuses_a_distribution_without_the_package_files(tmp_path):
    from ctrflow.beam_jobs.worker_wheel import StagingError, build_installed_wheel

    class Editable:  # what an editable install lists: a .pth finder, no package files
        version = "0.2.0"
        files = []

    with pytest.raises(StagingError, match="give --setup_file, --extra_package or --sdk_container_image"):
        build_installed_wheel(str(tmp_path), Editable())

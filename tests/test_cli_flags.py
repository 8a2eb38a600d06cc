"""Flags: a flag neither ctrflow nor Beam knows stops every subcommand with one line and exit 2 (issue 14)."""
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from ctrflow import cli
from ctrflow.beam_jobs.options import PreprocessOptions, ScoreOptions, parse_job_options
from ctrflow.beam_jobs.preprocess import job as preprocess
from ctrflow.beam_jobs.scoring import job as score

PRE = ["preprocess", "--schema", "s.yaml", "--train", "t.csv", "--output", "out"]
SCORE = ["score", "--model", "m", "--input", "d.csv", "--date", "2026-11-21", "--output", "out"]
# every Beam flag the README mentions, with a value
README_BEAM_FLAGS = ["--runner", "DataflowRunner", "--project", "p", "--region", "europe-west1",
                     "--temp_location", "gs://b/tmp", "--direct_num_workers", "2",
                     "--direct_running_mode", "multi_processing", "--setup_file", "./setup.py",
                     "--sdk_container_image", "europe-docker.pkg.dev/p/r/ctrflow:0.2.0",
                     "--experiments", "use_runner_v2", "--experiments=no_use_multiple_sdk_containers"]


def _fails(argv: list[str], capsys) -> str:
    """Runs the CLI; asserts exit 2 and one line on stderr; returns that line."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("argv,typo,guess", [
    (PRE + ["--eval-fracton", "0.1"], "--eval-fracton", "--eval-fraction"),
    (PRE + ["--eval_fraction=0.1"], "--eval_fraction", "--eval-fraction"),
    (SCORE + ["--psi-treshold", "0.3"], "--psi-treshold", "--psi-threshold"),
])
def test_a_mistyped_ctrflow_flag_stops_the_beam_job_with_a_suggestion(argv, typo, guess, capsys):
    line = _fails(argv, capsys)
    assert line == (f"ctrflow {argv[0]}: error: unknown flag {typo} (did you mean {guess}?); "
                    f"see ctrflow {argv[0]} --help")


@pytest.mark.parametrize("argv,typo,guess", [
    (PRE + ["--direct_num_worker", "2"], "--direct_num_worker", "--direct_num_workers"),
    (SCORE + ["--temp-location", "gs://b/t"], "--temp-location", "--temp_location"),
    (PRE + ["--sdk_container_img", "x"], "--sdk_container_img", "--sdk_container_image"),
])
def test_a_mistyped_beam_flag_stops_the_job_with_the_beam_flag_suggested(argv, typo, guess, capsys):
    assert _fails(argv, capsys) == (f"ctrflow {argv[0]}: error: unknown flag {typo} (did you mean {guess}?); "
                                    f"see ctrflow {argv[0]} --help")


def test_a_flag_nobody_knows_and_a_stray_value_stop_without_a_guess(capsys):
    assert _fails(PRE + ["--zzzz"], capsys) == "ctrflow preprocess: error: unknown flag --zzzz; see ctrflow " \
                                               "preprocess --help"
    assert _fails(PRE + ["stray"], capsys) == "ctrflow preprocess: error: unexpected argument 'stray'"


@pytest.mark.parametrize("argv,typo,guess", [
    (["train", "--data", "d", "--output", "m", "--epoch", "3"], "--epoch", "--epochs"),
    (["train", "--data", "d", "--output", "m", "--embeding-dim", "8"], "--embeding-dim", "--embedding-dim"),
    (["evaluate", "--model", "m", "--data", "d", "--bin", "5"], "--bin", "--bins"),
    (["demo", "--ouput", "x"], "--ouput", "--output"),
])
def test_train_evaluate_and_demo_reject_unknown_flags_the_same_way(argv, typo, guess, capsys):
    assert _fails(argv, capsys) == (f"ctrflow {argv[0]}: error: unknown flag {typo} (did you mean {guess}?); "
                                    f"see ctrflow {argv[0]} --help")


def test_prefixes_of_our_flags_are_not_abbreviations(capsys):
    # argparse would take --eval-frac for --eval-fraction; with Beam flags passing through that is a trap
    assert "unknown flag --eval-frac (did you mean --eval-fraction?)" in _fails(PRE + ["--eval-frac", "0.1"], capsys)


@pytest.mark.parametrize("cls,job,argv", [
    (PreprocessOptions, preprocess, PRE[1:]),
    (ScoreOptions, score, SCORE[1:]),
])
def test_every_beam_flag_the_readme_mentions_passes_through(cls, job, argv):
    options = parse_job_options(cls, job.build_arg_parser(), argv + README_BEAM_FLAGS)
    assert options.beam_args == tuple(README_BEAM_FLAGS)
    beam = PipelineOptions(list(options.beam_args)).get_all_options()
    assert (beam["runner"], beam["project"], beam["region"], beam["temp_location"]) == (
        "DataflowRunner", "p", "europe-west1", "gs://b/tmp")
    assert (beam["direct_num_workers"], beam["direct_running_mode"]) == (2, "multi_processing")
    assert beam["setup_file"] == "./setup.py"
    assert beam["sdk_container_image"] == "europe-docker.pkg.dev/p/r/ctrflow:0.2.0"
    assert beam["experiments"] == ["use_runner_v2", "no_use_multiple_sdk_containers"]


def test_option_errors_are_one_line_with_exit_2(capsys):
    assert cli.main(PRE + ["--eval-fraction", "2"]) == 2
    assert capsys.readouterr().err.strip() == ("ctrflow preprocess: error: --eval-fraction F (0 < F < 1) splits the "
                                               "--train input (by --split-key COLUMN or by row); give it without "
                                               "--eval")
    assert cli.main(SCORE[:6] + ["2026-11-31", "--output", "o"]) == 2
    assert capsys.readouterr().err.strip().startswith("ctrflow score: error: --date '2026-11-31': expected YYYY-MM-DD")

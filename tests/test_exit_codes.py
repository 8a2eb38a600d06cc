"""Exit codes a scheduler can branch on: one per condition, all from ``common.errors.ExitCode``.

The conditions that need a real job run are tested where that job is: too many rejected rows
(tests/test_bad_input.py, 6), drift (tests/test_score_job.py, 5), the promotion gate
(tests/test_warm_start_and_gate.py, 3), monitor thresholds (tests/test_monitor.py, 4), bad input in a
subprocess (tests/test_bad_input.py, tests/test_score_e2e.py, 2).
"""
import pytest

from ctrflow import cli
from ctrflow.cli import demo
from ctrflow.cli.commands import _user_error
from ctrflow.common.errors import ExitCode, OptionsError, UserError


def test_the_table():
    """The README's table; a changed number breaks every scheduler that branches on it."""
    assert {c.name: int(c) for c in ExitCode} == {
        "OK": 0, "UNEXPECTED": 1, "USER_ERROR": 2, "NOT_PROMOTED": 3, "MONITOR_THRESHOLD": 4, "DRIFT": 5,
        "TOO_MANY_REJECTED": 6, "INTERRUPTED": 130}


def test_each_error_class_carries_its_code():
    from ctrflow.beam_jobs.input.tasks import InputError
    from ctrflow.beam_jobs.outputs.manifest import RejectedFractionError
    from ctrflow.beam_jobs.scoring.job import DriftError
    from ctrflow.cli.monitor import ThresholdBreached
    from ctrflow.model.promotion import NotPromoted
    from ctrflow.schemas import SchemaError

    for cls in (UserError, OptionsError, SchemaError, InputError):
        assert cls("x").exit_code == ExitCode.USER_ERROR
    assert RejectedFractionError("x").exit_code == ExitCode.TOO_MANY_REJECTED
    assert DriftError("x").exit_code == ExitCode.DRIFT
    assert NotPromoted("x").code == ExitCode.NOT_PROMOTED
    assert ThresholdBreached("x").code == ExitCode.MONITOR_THRESHOLD


def test_help_is_0_and_usage_and_user_errors_are_2(tmp_path, capsys):
    assert cli.main([]) == cli.main(["--help"]) == ExitCode.OK
    assert cli.main(["demo", "--help"]) == ExitCode.OK
    assert cli.main(["nope"]) == ExitCode.USER_ERROR
    assert cli.main(["demo", "--no-such-flag"]) == ExitCode.USER_ERROR
    capsys.readouterr()
    assert cli.main(["evaluate", "--model", str(tmp_path / "m"), "--data", str(tmp_path / "d")]) == 2
    assert capsys.readouterr().err.startswith(f"ctrflow evaluate: error: --model {tmp_path / 'm'}: no saved_model.pb")
    (tmp_path / "s.yaml").write_text("columns: [{name: x, role: numeric, scale: zscore, default: 5}]\n")
    argv = ["preprocess", "--schema", str(tmp_path / "s.yaml"), "--train", "t.csv", "--output", str(tmp_path / "o")]
    assert cli.main(argv) == ExitCode.USER_ERROR
    assert capsys.readouterr().err.strip() == (
        f"ctrflow preprocess: error: schema {tmp_path / 's.yaml'}: column 'x': default is not a key: the value a "
        "missing number takes is `missing: <number>` (on the log1p/clip scale) or `missing: bucket`")


@pytest.mark.parametrize("raised, code", [
    (ZeroDivisionError("a bug"), ExitCode.UNEXPECTED),
    (KeyboardInterrupt(), ExitCode.INTERRUPTED),
    (OptionsError("--x: bad"), ExitCode.USER_ERROR),
])
def test_unexpected_errors_are_1_and_interrupts_130(monkeypatch, capsys, raised, code):
    def run(argv):
        raise raised

    monkeypatch.setattr(demo, "run", run)
    assert cli.main(["demo"]) == code
    if code == ExitCode.UNEXPECTED:
        assert capsys.readouterr().err.strip() == ("ctrflow demo: error: ZeroDivisionError: a bug (run again with "
                                                   "--debug for the traceback)")


@pytest.mark.parametrize("name, code", [("InputError", 2), ("RejectedFractionError", 6), ("DriftError", 5)])
def test_an_error_raised_on_a_worker_keeps_its_code(name, code):
    """A runner re-raises a worker's exception as text: the class name in it still gives the code."""
    import ctrflow.beam_jobs.outputs.manifest  # noqa: F401 - registers the classes, as a job run does
    import ctrflow.beam_jobs.scoring.job  # noqa: F401

    wrapped = RuntimeError(f"Traceback ...\nctrflow.x.{name}: input a.csv: bad [while running 'Read/Parse']\n")
    assert _user_error(wrapped) == ("input a.csv: bad", code)

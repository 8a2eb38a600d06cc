"""What a user sees when a job fails inside a Beam runner: one line with the root cause (issue 29, item 7).

A real DirectRunner pipeline whose DoFn fails the way a full disk does (``OSError`` 28 raised under a writer's
own exception), run through the ``ctrflow`` console entry point in a child process, as a user runs it.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from ctrflow.cli.commands import _root_cause

FULL = "/scores/date=2026-11-21/v=1/part-0.parquet"
ONE_LINE = (f"ctrflow score: error: OSError: [Errno 28] No space left on device: '{FULL}' "
            "(run again with --debug for the traceback)")

# a stand-in for the score job: its pipeline writes through a sink that hits a full disk
JOB = textwrap.dedent(f"""
    import sys

    import apache_beam as beam

    from ctrflow.beam_jobs.runners import new_pipeline
    from ctrflow.cli import commands
    from ctrflow.common.logs import setup_logging


    def write(rows):
        raise OSError(28, "No space left on device", {FULL!r})


    class WriteParquet(beam.DoFn):
        def process(self, rows):
            try:
                write(rows)
            except OSError as e:
                raise RuntimeError("could not write the scores") from e


    def run(argv):
        setup_logging()
        with new_pipeline(argv) as p:
            p | beam.Create(list(range(20))) | beam.Reshuffle() | beam.BatchElements() | beam.ParDo(WriteParquet())


    commands.COMMANDS["score"] = ("__main__", "a score job on a full disk")
    sys.argv = ["ctrflow", "score", *sys.argv[1:]]
    commands.entry()
""")

IN_PROCESS = []  # Beam's FnApiRunner in this process: the exception comes back chained
THREADS = ["--direct_num_workers=2", "--direct_running_mode=multi_threading"]  # comes back as traceback text


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", JOB, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("beam_args", [IN_PROCESS, THREADS], ids=["in_process", "threads"])
def test_a_failure_in_a_beam_pipeline_is_one_line_with_its_root_cause(beam_args):
    done = _run(beam_args)
    assert done.stderr.splitlines() == [ONE_LINE]
    assert done.returncode == 1


def test_debug_shows_the_traceback():
    done = _run([*THREADS, "--debug"])
    assert done.returncode != 0
    assert "Traceback (most recent call last):" in done.stderr
    assert f"OSError: [Errno 28] No space left on device: '{FULL}'" in done.stderr


def _raised(make) -> BaseException:
    try:
        make()
    except BaseException as e:  # noqa: BLE001
        return e
    raise AssertionError("nothing raised")


def test_root_cause_of_chained_and_textual_wrappers():
    def chained():
        try:
            raise ValueError("bad value\nsecond line")
        except ValueError as e:
            raise RuntimeError("ValueError: bad value [while running 'Score/Predict']") from e

    assert _root_cause(_raised(chained)) == "ValueError: bad value"
    text = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n    g()\n"
            "KeyError: 'city' [while running 'Parse']\n\nDuring handling of the above exception, another "
            "exception occurred:\n\nTraceback (most recent call last):\n  File \"y.py\", line 2\n"
            "RuntimeError: KeyError: 'city' [while running 'Parse']\n")
    assert _root_cause(RuntimeError(text)) == "KeyError: 'city'"
    assert _root_cause(KeyboardInterrupt()) == "KeyboardInterrupt"


def test_an_exception_raised_while_handling_another_is_the_message_unless_beam_raised_it():
    def handled():
        try:
            {}["x"]
        except KeyError:
            raise ValueError("unknown model family 'x'")  # noqa: B904 - the implicit chaining under test

    assert _root_cause(_raised(handled)) == "ValueError: unknown model family 'x'"
    text = ("Traceback (most recent call last):\n  File \"x.py\", line 1\nKeyError: 'x'\n\nDuring handling of the "
            "above exception, another exception occurred:\n\nTraceback (most recent call last):\n  File \"x.py\", "
            "line 3\nValueError: unknown model family 'x'\nwith a second line\n")
    assert _root_cause(RuntimeError(text)) == "ValueError: unknown model family 'x'"

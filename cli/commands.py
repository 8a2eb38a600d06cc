"""``ctrflow``: the command-line entry point.

Each subcommand is a job module's ``run(argv)``. Unknown flags stop a job
with one line and exit 2 (``preprocess`` and ``score`` pass Beam's own
pipeline options through); a ``UserError`` (bad schema, input or options)
prints as one line; ``--debug`` shows tracebacks. Every exit status is a
``common.errors.ExitCode``.
"""
from __future__ import annotations

import gc
import importlib
import logging
import os
import re
import sys

from ctrflow.common import compat
from ctrflow.common.errors import ExitCode, UserError, user_error_codes
from ctrflow.common.logs import native_notices_filtered

COMMANDS = {
    "preprocess": ("ctrflow.beam_jobs.preprocess.job",
                   "analyze + transform train/eval data into TFRecords (Beam + tf.Transform)"),
    "train": ("ctrflow.model.train", "train DeepFM / Wide&Deep / LR and export one raw-feature SavedModel"),
    "tune": ("ctrflow.model.tune", "a few trials of learning rate, embedding size, weight decay and dropout, "
                                   "ranked on the validation holdout"),
    "evaluate": ("ctrflow.model.evaluate", "evaluate an exported model on preprocessed data (AUC, log loss, plots)"),
    "score": ("ctrflow.beam_jobs.scoring.job",
              "batch-score a daily table with an exported model (Beam), with drift report"),
    "monitor": ("ctrflow.cli.monitor", "join scored dates with their labels: AUC, calibration, score PSI"),
    "schema": ("ctrflow.cli.schema_infer", "schema infer: a first schema from a sample of your table, every "
                                           "column's decision commented"),
    "demo": ("ctrflow.cli.demo", "preprocess, train and score the bundled census data; print AUC and paths"),
}

# Jobs that import TensorFlow through tf.Transform at once: importing it first, without its eager Keras import
# (``common.compat.tensorflow.import_tensorflow``), makes `import ctrflow.beam_jobs.preprocess.job` faster.
# ``score`` loads TensorFlow in the background by itself.
_TENSORFLOW_FIRST = frozenset({"preprocess"})


def _usage() -> str:
    lines = ["usage: ctrflow COMMAND [options]   (ctrflow COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name:<11} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return ExitCode.OK
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"ctrflow: error: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return ExitCode.USER_ERROR
    debug = "--debug" in rest  # ours, not the job's: full tracebacks
    rest = [a for a in rest if a != "--debug"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported
    _fewer_collections()
    if command in _TENSORFLOW_FIRST:
        from ctrflow.common.compat.tensorflow import import_tensorflow

        import_tensorflow()
    module = importlib.import_module(COMMANDS[command][0])
    try:
        module.run(rest)
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except SystemExit as e:  # argparse: --help (0) or a usage error (2), already printed; a CheckFailed's code
        return e.code if isinstance(e.code, int) else ExitCode.UNEXPECTED
    except Exception as e:  # noqa: BLE001 - one clear line for the user, details with --debug
        if debug or logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        user = _user_error(e)
        if user is not None:
            print(f"ctrflow {command}: error: {user[0]}", file=sys.stderr)
            return user[1]
        print(f"ctrflow {command}: error: {_root_cause(e)} (run again with --debug for the traceback)",
              file=sys.stderr)
        return ExitCode.UNEXPECTED
    return ExitCode.OK


def _fewer_collections() -> None:
    """Runs the cyclic garbage collector less often: a job allocates millions of long-lived objects at start-up.

    Importing TensorFlow and Beam and loading a SavedModel create millions of
    objects that live for the whole job; at Python's default threshold (700
    allocations) the collector walks them again and again: py-spy put it at
    a large share of the main thread's samples during a scoring run's
    start-up.
    """
    gc.set_threshold(50_000, 20, 100)


def entry() -> None:
    """The console script: ``main``, then the end of the process, without the interpreter's teardown by default.

    After a job every output is written and published (or the error printed)
    and the jobs remove their own temporary folders; what is left is tearing
    down TensorFlow, gRPC and Beam's worker threads, which took seconds after
    a scoring run (``compat.exit_process`` flushes the streams and log handlers first).
    TensorFlow's C++ start-up notices are filtered out of stderr (``common.logs``), except with ``--debug``.
    """
    with native_notices_filtered(enabled="--debug" not in sys.argv):
        code = main()
    compat.exit_process(code)


def _user_error(e: BaseException) -> tuple[str, int] | None:
    """(message, exit code) of our own ``UserError``, even when Beam wrapped it in its runner errors."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, UserError):
            return str(seen), seen.exit_code
        seen = seen.__cause__ or seen.__context__
    text = str(e)
    for name, code in sorted(user_error_codes().items()):  # raised on a worker: Beam re-raises it as text
        marker = f"{name}: "
        if marker in text:
            return text[text.rindex(marker) + len(marker):].split("\n")[0].split(" [while running")[0], code
    return None


def _root_message(e: BaseException) -> str:
    """Our own error message, even when Beam wrapped it; else the root cause's ``Type: message``."""
    found = _user_error(e)
    return found[0] if found else _root_cause(e)


_TRACEBACK = "Traceback (most recent call last):"
_CAUSED = "The above exception was the direct cause of the following exception:"
_DURING = "During handling of the above exception, another exception occurred:"
_BEAM_STEP = " [while running '"  # what Beam appends to an exception it re-raises from a step


def _root_cause(e: BaseException) -> str:
    """``Type: message`` of the exception that started ``e``, on one line, without Beam's step annotations.

    Beam hands a worker's exception on in two ways: in-process it re-raises it
    chained (``__context__``, innermost last); from another thread or process
    it raises a ``RuntimeError`` whose text is the worker's whole traceback,
    where Python printed the innermost exception first. A full disk once
    printed 659 lines this way. An explicit cause (``raise ... from``) is
    followed too; an exception raised while handling another one is not,
    unless Beam raised it (that one is the message that matters).
    """
    chain: list[BaseException] = []
    seen: BaseException | None = e
    while seen is not None and all(seen is not c for c in chain):
        chain.append(seen)
        seen = seen.__cause__ or (seen.__context__ if _BEAM_STEP in str(seen) else None)
    worker_tracebacks = [str(c) for c in chain if _TRACEBACK in str(c)]
    if worker_tracebacks:
        line = _root_of_traceback_text(worker_tracebacks[-1])
    else:
        first = (str(chain[-1]).strip().splitlines() or [""])[0]
        line = f"{type(chain[-1]).__name__}: {first}" if first else type(chain[-1]).__name__
    return re.sub(r" \[while running '.*?'\]", "", line)


def _root_of_traceback_text(text: str) -> str:
    """The same walk as ``_root_cause`` over a traceback's text: each exception's ``Type: message`` line follows
    its indented frames, and the line before a ``Traceback`` says how it is linked to the exception above."""
    found: list[tuple[str, str | None]] = []  # (exception line, how the one above led to it)
    link, in_frames = None, False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped == _TRACEBACK:
            in_frames = True
        elif stripped in (_CAUSED, _DURING):
            link = stripped
        elif in_frames and stripped and not line[:1].isspace():
            found.append((stripped, link))
            link, in_frames = None, False
    if not found:
        return text.strip().splitlines()[0]
    i = len(found) - 1
    while i > 0 and (found[i][1] == _CAUSED or (found[i][1] == _DURING and _BEAM_STEP in found[i][0])):
        i -= 1
    return found[i][0]


if __name__ == "__main__":
    entry()

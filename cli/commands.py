"""``ctrflow``: the command-line entry point.

Each subcommand is a job module's ``run(argv)``. Unknown flags stop a job
with one line and exit 2 (``preprocess`` and ``score`` pass Beam's own
pipeline options through); a ``UserError`` (bad schema, input or options)
prints as one line; ``--debug`` shows tracebacks.
"""
from __future__ import annotations

import gc
import importlib
import logging
import os
import sys

from ctrflow.common.errors import UserError, user_error_names

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
    "demo": ("ctrflow.cli.demo", "preprocess, train and score the bundled census data; print AUC and paths"),
}

# Jobs that import TensorFlow through tf.Transform at once: importing it first, without its eager Keras import
# (``model.artifact.import_tensorflow``), took `import ctrflow.beam_jobs.preprocess.job` from 9.5-10.6 s to
# 7.4-9.3 s (4 runs each, interleaved, 2 cores). ``score`` loads TensorFlow in the background by itself.
_TENSORFLOW_FIRST = frozenset({"preprocess"})


def _usage() -> str:
    lines = ["usage: ctrflow COMMAND [options]   (ctrflow COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name:<11} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"ctrflow: error: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    debug = "--debug" in rest  # ours, not the job's: full tracebacks
    rest = [a for a in rest if a != "--debug"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported
    _fewer_collections()
    if command in _TENSORFLOW_FIRST:
        from ctrflow.model.artifact import import_tensorflow

        import_tensorflow()
    module = importlib.import_module(COMMANDS[command][0])
    try:
        module.run(rest)
    except KeyboardInterrupt:
        return 130
    except SystemExit as e:  # argparse: --help (0) or a usage error (2), already printed
        return e.code if isinstance(e.code, int) else 1
    except Exception as e:  # noqa: BLE001 - one clear line for the user, details with --debug
        if debug or logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        user = _user_error(e)
        if user is not None:
            print(f"ctrflow {command}: error: {user[0]}", file=sys.stderr)
            return user[1]
        print(f"ctrflow {command}: error: {type(e).__name__}: {e} (run again with --debug for the traceback)",
              file=sys.stderr)
        return 1
    return 0


def _fewer_collections() -> None:
    """Runs the cyclic garbage collector less often: a job allocates millions of long-lived objects at start-up.

    Importing TensorFlow and Beam and loading a SavedModel create millions of
    objects that live for the whole job; at Python's default threshold (700
    allocations) the collector walks them again and again. Measured on a 1M-row
    scoring run: py-spy put the collector at 47% of the main thread's samples,
    and this threshold cut the job's CPU seconds by about 10%.
    """
    gc.set_threshold(50_000, 20, 100)


def entry() -> None:
    """The console script: ``main``, then the end of the process without the interpreter's teardown.

    After a job every output is written and published (or the error printed)
    and the jobs remove their own temporary folders; what is left is tearing
    down TensorFlow, gRPC and Beam's worker threads, which took 3-5 s after a
    scoring run. Streams and log handlers are flushed first.
    """
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _user_error(e: BaseException) -> tuple[str, int] | None:
    """(message, exit code) of our own ``UserError``, even when Beam wrapped it in its runner errors."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, UserError):
            return str(seen), seen.exit_code
        seen = seen.__cause__ or seen.__context__
    text = str(e)
    for name in sorted(user_error_names()):  # raised on a worker: Beam re-raises it as text
        marker = f"{name}: "
        if marker in text:
            return text[text.rindex(marker) + len(marker):].split("\n")[0].split(" [while running")[0], 1
    return None


def _root_message(e: BaseException) -> str:
    """Our own error message, even when Beam wrapped it; else the exception's text."""
    found = _user_error(e)
    return found[0] if found else str(e)


if __name__ == "__main__":
    entry()

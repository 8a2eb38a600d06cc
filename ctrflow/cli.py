"""``ctrflow``: the command-line entry point.

Each subcommand is a job module's ``run(argv)``; flags a job does not know are
Beam pipeline options and pass through unchanged.
"""
from __future__ import annotations

import importlib
import logging
import os
import sys

COMMANDS = {
    "preprocess": ("ctrflow.beam_jobs.preprocess", "analyze + transform train/eval data into TFRecords (Beam + tf.Transform)"),
    "train": ("ctrflow.model.train", "train DeepFM / Wide&Deep / LR and export one raw-feature SavedModel"),
    "evaluate": ("ctrflow.model.evaluate", "evaluate an exported model on preprocessed data (AUC, log loss, plots)"),
    "score": ("ctrflow.beam_jobs.score", "batch-score a daily table with an exported model (Beam), with drift report"),
    "monitor": ("ctrflow.beam_jobs.monitor", "join scored dates with their labels: AUC, calibration, score PSI"),
    "demo": ("ctrflow.demo", "preprocess, train and score the bundled census data; print AUC and paths"),
}


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
        print(f"ctrflow: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported
    module = importlib.import_module(COMMANDS[command][0])
    try:
        module.run(rest)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - one clear line for the user, details with --debug
        if "--debug" in rest or logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        print(f"ctrflow {command}: error: {_root_message(e)}", file=sys.stderr)
        return 1
    return 0


def _root_message(e: BaseException) -> str:
    """Our own error message, even when Beam wrapped it in its runner errors."""
    from ctrflow.beam_jobs.sources import InputError

    seen = e
    while seen is not None:
        if isinstance(seen, InputError):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    text = str(e)
    marker = "InputError: "
    if marker in text:  # raised on a worker: Beam re-raises it as text
        return text[text.rindex(marker) + len(marker):].split("\n")[0].split(" [while running")[0]
    return text


if __name__ == "__main__":
    sys.exit(main())

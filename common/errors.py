"""``UserError``: the one base class of mistakes the user can fix (flags, schema, input), and the exit codes.

The CLI prints any ``UserError`` as one line, ``ctrflow COMMAND: error: MESSAGE``,
without a traceback: the message itself names the flag, file or column. Every
other exception is a bug or an environment failure and keeps its traceback
with ``--debug``. Lives at the bottom layer so every layer can raise it.
"""
from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Every status ``ctrflow`` exits with: one per condition a scheduler may branch on (README, "Exit codes").

    Each error class below (and its subclasses in the job modules) carries its
    code as ``exit_code``; nothing else in ctrflow picks a number.
    """

    OK = 0  # done, or --help
    UNEXPECTED = 1  # a bug or an environment failure (the message says to rerun with --debug)
    USER_ERROR = 2  # a flag, schema or input to fix; also argparse's usage errors
    NOT_PROMOTED = 3  # train --require-better: the promotion gate refused the model (outputs written)
    MONITOR_THRESHOLD = 4  # monitor --fail-on: a rule was broken (outputs written)
    DRIFT = 5  # score --fail-on-drift: a feature drifted over --psi-threshold (scores published)
    TOO_MANY_REJECTED = 6  # preprocess/score: rejected rows over --max-rejected-fraction (nothing published)
    INTERRUPTED = 130  # Ctrl-C / SIGINT, as shells report it


class UserError(Exception):
    """A mistake in what the user gave; ``exit_code`` is what the CLI exits with."""

    exit_code = ExitCode.USER_ERROR


class OptionsError(UserError, ValueError):
    """Job options that cannot be used together (exit 2, as argparse's usage errors)."""

    exit_code = ExitCode.USER_ERROR


class CheckFailed(SystemExit):
    """A check failed after the job wrote its outputs (monitor thresholds, the promotion gate).

    Exits with the subclass's ``exit_code``, so a scheduler can tell which check failed; ``str()`` is the message.
    """

    exit_code = ExitCode.UNEXPECTED  # every subclass names its own

    def __init__(self, message: str):
        super().__init__(self.exit_code)
        self.message = message

    def __str__(self) -> str:
        return self.message


def user_error_codes() -> dict[str, int]:
    """Exit code of every ``UserError`` subclass imported so far, by class name.

    A worker's exception reaches the driver re-raised by the runner as text;
    these names find our message (and its code) inside it.
    """
    codes, todo = {}, [UserError]
    while todo:
        cls = todo.pop()
        codes[cls.__name__] = int(cls.exit_code)
        todo.extend(cls.__subclasses__())
    return codes


"""``UserError``: the one base class of mistakes the user can fix (flags, schema, input).

The CLI prints any ``UserError`` as one line, ``ctrflow COMMAND: error: MESSAGE``,
without a traceback: the message itself names the flag, file or column. Every
other exception is a bug or an environment failure and keeps its traceback
with ``--debug``. Lives at the bottom layer so every layer can raise it.
"""
from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user gave; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class OptionsError(UserError, ValueError):
    """Job options that cannot be used together (exit 2, as argparse's usage errors)."""

    exit_code = 2


class CheckFailed(SystemExit):
    """A check failed after the job wrote its outputs (monitor thresholds, the promotion gate).

    Exits with the subclass's ``exit_code``, so a scheduler can tell which check failed; ``str()`` is the message.
    """

    exit_code = 1

    def __init__(self, message: str):
        super().__init__(self.exit_code)
        self.message = message

    def __str__(self) -> str:
        return self.message


def user_error_names() -> set[str]:
    """Class names of every ``UserError`` subclass imported so far.

    A worker's exception reaches the driver re-raised by the runner as text;
    these names find our message inside it.
    """
    names, todo = set(), [UserError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return names

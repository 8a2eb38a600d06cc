"""The ``ctrflow`` command: one subcommand per job, the bundled demo and ``ctrflow monitor``.

The top layer: it may import every other one (common <- schemas <- pipeline <- model <- beam_jobs <- cli).
"""
from ctrflow.cli.commands import COMMANDS, entry, main

__all__ = ["COMMANDS", "entry", "main"]

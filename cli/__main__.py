"""``python -m ctrflow.cli``: the same as the ``ctrflow`` console script."""
from ctrflow.cli.commands import entry

entry()

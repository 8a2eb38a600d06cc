"""Where the trainer's validation rows come from: the preprocess output's ``valid`` split, else a hash holdout.

Why: the ``--valid-fraction`` holdout is a random sample of the training
records, so it shares their days; a model that scores tomorrow is better
stopped, calibrated and tuned on the latest rows before eval.
``ctrflow preprocess --valid PATTERN`` writes those rows as a ``valid`` split
(transformed with the training graph, not analyzed). When it is present, the
trainer validates on all of it and trains on all of the train split; the
fraction only keeps its meaning of ``0`` = select on eval.
"""
from __future__ import annotations

import tensorflow as tf

from ctrflow.model.inputs import split_files

VALID = "valid"

Holdout = tuple[float, bool]  # (fraction, inside) of ``model.inputs.in_holdout``


def has_valid_split(data_dir: str) -> bool:
    """True when the preprocess output (a version folder) holds a ``valid`` split."""
    return bool(tf.io.gfile.glob(split_files(data_dir, VALID)))


def train_holdout(data_dir: str, valid_fraction: float) -> Holdout | None:
    """The holdout the training rows leave out: none with a ``valid`` split, else the hash holdout."""
    return None if has_valid_split(data_dir) else (valid_fraction, False)


def valid_rows(data_dir: str, valid_fraction: float) -> tuple[str, Holdout | None]:
    """(split, holdout) of the validation rows: all of ``valid`` when present, else the train split's holdout."""
    return (VALID, None) if has_valid_split(data_dir) else ("train", (valid_fraction, True))

"""``SeedEnsemble``: the mean of a few models trained with different seeds, served as one model.

On the small samples (thousands to tens of thousands of training rows), two
seeds of the same model differ by more validation AUC than most flag changes:
averaging members removes much of that variance (BENCHMARKS.md quality). The
ensemble exposes what the trainer and ``model.export`` use of a ``CTRModel``
(``probabilities``, ``log_odds``, ``model_config``, ``layout``), so one
SavedModel with the usual signatures serves the mean.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf


class SeedEnsemble(tf.Module):
    """``probabilities`` = mean of the members' (each Platt-scaled) probabilities."""

    def __init__(self, members: Sequence[Any]) -> None:
        super().__init__(name="seed_ensemble")
        if not members:
            raise ValueError("SeedEnsemble needs at least one member")
        self.members = list(members)
        self.model_config = members[0].model_config
        self.layout = members[0].layout

    def probabilities(self, features: Mapping[str, Any]) -> tf.Tensor:
        probs = [tf.cast(m.probabilities(features), tf.float32) for m in self.members]
        return tf.add_n(probs) / float(len(probs))

    def log_odds(self, features: Mapping[str, Any]) -> tf.Tensor:
        """Log-odds of the mean probability (for callers that want a logit)."""
        p = tf.clip_by_value(self.probabilities(features), 1e-7, 1 - 1e-7)
        return tf.math.log(p) - tf.math.log1p(-p)

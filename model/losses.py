"""Losses on logits: written with softplus so they never take log(0).

Everything takes logits, never probabilities: sigmoid followed by log loses
precision exactly where CTR models live (p close to 0).
"""
from __future__ import annotations

from keras import ops


def log_loss(labels, logits, sample_weight=None):
    """Mean binary cross-entropy from logits: ``softplus(z) - y*z``.

    Weighted like Keras' ``sum_over_batch_size``: ``mean(w * loss)``.
    """
    labels = ops.cast(labels, logits.dtype)
    per_example = ops.softplus(logits) - labels * logits
    if sample_weight is not None:
        per_example = per_example * ops.cast(sample_weight, logits.dtype)
    return ops.mean(per_example)


def pairwise_logistic_loss(s_pos, s_neg):
    """RankNet loss: mean of ``log_loss(1, sigmoid(s_pos - s_neg)) = softplus(s_neg - s_pos)``."""
    return ops.mean(ops.softplus(s_neg - s_pos))


def rdrop_kl(logits_a, logits_b):
    """Mean symmetric KL ``0.5*(KL(p||q) + KL(q||p))`` of two Bernoulli heads (R-Drop).

    For Bernoulli distributions the symmetric KL collapses to
    ``0.5 * (p - q) * (logit_p - logit_q)`` (since ``log p - log(1-p)`` is the
    logit), which is stable, non-negative and exactly 0 for equal logits.
    """
    return ops.mean(0.5 * (ops.sigmoid(logits_a) - ops.sigmoid(logits_b)) * (logits_a - logits_b))


def calibrate_downsampled(p, negative_keep_rate: float):
    """Undo negative downsampling: ``p / (p + (1 - p) / w)``, w = keep rate of negatives.

    Training on a fraction w of negatives inflates the odds by 1/w; this maps
    predictions back to the original click rate.
    """
    return p / (p + (1.0 - p) / negative_keep_rate)

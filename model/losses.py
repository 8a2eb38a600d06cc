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


def weighted_mean(values, weights):
    """``sum(w * v) / sum(w)``: the mean over rows repeated w times (integer weights = duplicated rows).

    For the schema's sample weights (``role: weight``). A batch whose weights
    are all 0 gives 0, not NaN: it contributes no gradient.
    """
    w = ops.reshape(ops.cast(weights, values.dtype), ops.shape(values))
    return ops.divide_no_nan(ops.sum(w * values), ops.sum(w))


def weighted_log_loss(labels, logits, weights):
    """Weighted mean binary cross-entropy from logits (``weighted_mean`` of ``softplus(z) - y*z``).

    Unlike ``log_loss``'s ``mean(w * loss)`` (``positive_weight``'s class
    weights), the loss of a batch is that of its rows duplicated by weight.
    """
    labels = ops.cast(labels, logits.dtype)
    return weighted_mean(ops.softplus(logits) - labels * logits, weights)


def pairwise_logistic_loss(s_pos, s_neg, weights=None):
    """RankNet loss: mean of ``log_loss(1, sigmoid(s_pos - s_neg)) = softplus(s_neg - s_pos)``.

    ``weights``: one per pair (the product of its rows' weights, ``model.inputs``): the ``weighted_mean``.
    """
    if weights is not None:
        return weighted_mean(ops.softplus(s_neg - s_pos), weights)
    return ops.mean(ops.softplus(s_neg - s_pos))


def rdrop_kl(logits_a, logits_b, weights=None):
    """Mean symmetric KL ``0.5*(KL(p||q) + KL(q||p))`` of two Bernoulli heads (R-Drop).

    For Bernoulli distributions the symmetric KL collapses to
    ``0.5 * (p - q) * (logit_p - logit_q)`` (since ``log p - log(1-p)`` is the
    logit), which is stable, non-negative and exactly 0 for equal logits.
    ``weights`` (sample weights): the ``weighted_mean`` over rows instead.
    """
    kl = 0.5 * (ops.sigmoid(logits_a) - ops.sigmoid(logits_b)) * (logits_a - logits_b)
    return ops.mean(kl) if weights is None else weighted_mean(kl, weights)


def calibrate_downsampled(p, negative_keep_rate: float):
    """Undo negative downsampling: ``p / (p + (1 - p) / w)``, w = keep rate of negatives.

    Training on a fraction w of negatives inflates the odds by 1/w; this maps
    predictions back to the original click rate.
    """
    return p / (p + (1.0 - p) / negative_keep_rate)

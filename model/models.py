"""``CTRModel`` (LR / Wide&Deep / DeepFM / DCN-V2, or the caller's own model), its training steps, and the factories.

Every built-in model is "linear + deep": the first-order ``Linear`` logit, plus
(DeepFM) the FM pairwise term, plus a (residual) DNN over the field embeddings,
which DCN-V2 pairs with a cross network (stacked before it or parallel to it).
``--model package.module:function`` wraps the caller's own Keras model instead
(``custom_model``): the logit is all its own, the rest (losses, calibration,
export) is ctrflow's. The custom ``train_step`` adds what ``Model.fit`` lacks
for CTR: R-Drop, pairwise loss and a separate optimiser (e.g. FTRL) for the
wide weights.
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from ctrflow.common.errors import UserError
from ctrflow.model.config import ModelConfig
from ctrflow.model.layers import (
    DNN,
    CrossNetwork,
    FieldEmbedding,
    FMSecondOrder,
    Hadamard,
    Linear,
    register,
    stack_dense,
)
from ctrflow.model.losses import (
    calibrate_downsampled,
    log_loss,
    pairwise_logistic_loss,
    rdrop_kl,
    weighted_log_loss,
)
from ctrflow.model.optimizers import LazyAdam, SparseAdagrad, SparseFtrl
from ctrflow.pipeline.layout import FeatureLayout


def feature_spec(layout: FeatureLayout) -> dict[str, tf.TensorSpec]:
    """The model's input signature (e.g. for a serving ``tf.function``)."""
    spec = {f.name: tf.TensorSpec([None, None] if f.multivalent else [None], tf.int64, f.name)
            for f in layout.sparse}
    spec.update({f.name: tf.TensorSpec([None], tf.float32, f.name) for f in layout.dense})
    spec.update({f.position: tf.TensorSpec([None], tf.float32, f.position) for f in layout.sparse if f.position})
    if layout.global_index is not None:
        gi = layout.global_index
        spec[gi.index_key] = tf.TensorSpec([None, gi.num_fields], tf.int64, gi.index_key)
        spec[gi.value_key] = tf.TensorSpec([None, gi.num_fields], tf.float32, gi.value_key)
    return spec


def dummy_features(layout: FeatureLayout, rows: int = 1) -> dict[str, np.ndarray]:
    """A batch of ``rows`` valid inputs (all ids 0), used to create the variables."""
    return {name: np.zeros([rows if d is None else d for d in spec.shape], spec.dtype.as_numpy_dtype)
            for name, spec in feature_spec(layout).items()}


def keras_inputs(layout: FeatureLayout) -> dict[str, Any]:
    """``keras.Input``s of every model input, by name: the inputs of a functional custom model."""
    return {name: keras.Input(shape=tuple(spec.shape[1:]), dtype=spec.dtype.name, name=name)
            for name, spec in feature_spec(layout).items()}


class CustomModelError(UserError, ValueError):
    """``--model package.module:function`` does not name a usable model builder."""


def _builder(spec: str) -> Callable[..., Any]:
    """The function ``package.module:function`` names (imported from sys.path: installed or on PYTHONPATH)."""
    module_name, _, attr = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - any import failure is the user's module's; one line, cause chained
        raise CustomModelError(f"--model {spec}: cannot import {module_name} ({type(e).__name__}: {e}); "
                               "is it installed or on PYTHONPATH?") from e
    for part in attr.split("."):
        if not hasattr(target, part):
            raise CustomModelError(f"--model {spec}: {module_name} has no attribute {attr}")
        target = getattr(target, part)
    if not callable(target):
        raise CustomModelError(f"--model {spec}: {attr} is not callable (a {type(target).__name__})")
    return target


def _input_names(model: keras.Model) -> tuple[str, ...] | None:
    """A functional model's input names (it is called with exactly them), else None (it takes the whole dict)."""
    try:
        inputs = model.input
    except (AttributeError, ValueError):  # a subclassed model: no symbolic inputs
        return None
    if not isinstance(inputs, Mapping):
        raise CustomModelError(f"the custom model {model.name} takes {type(inputs).__name__} inputs; it must take "
                               "ctrflow's feature dict (e.g. keras_inputs(layout))")
    return tuple(inputs)


def custom_model(layout: FeatureLayout, config: ModelConfig) -> tuple[keras.Model, tuple[str, ...] | None]:
    """The caller's model ``config.model`` builds, checked: a ``keras.Model`` giving one logit per row.

    Returns it with the feature names a functional model takes (None: it is
    given the whole feature dict, see ``feature_spec``). Its variables are
    created here, on a two-row batch.
    """
    spec = config.model
    model = _builder(spec)(layout, config)
    if not isinstance(model, keras.Model):
        raise CustomModelError(f"--model {spec}: returned a {type(model).__name__}, not a keras.Model")
    names = _input_names(model)
    known = feature_spec(layout)
    unknown = [n for n in names or () if n not in known]
    if unknown:
        raise CustomModelError(f"--model {spec}: inputs {unknown} are not ctrflow features ({sorted(known)})")
    rows = 2
    batch = dummy_features(layout, rows)
    out = model(batch if names is None else {n: batch[n] for n in names}, training=False)
    shape = tuple(getattr(out, "shape", ()) or ())
    if not hasattr(out, "shape") or shape not in ((rows,), (rows, 1)):
        got = f"shape {shape}" if hasattr(out, "shape") else f"a {type(out).__name__}"
        raise CustomModelError(f"--model {spec}: the model must return one logit per row ([batch, 1] or [batch]); "
                               f"for {rows} rows it returned {got}")
    return model, names


@register
class CTRModel(keras.Model):
    """``logit = linear(x) [+ fm(e)] [+ head(deep(x0))]``, e = field embeddings, x0 = [e, hadamard, dense].

    ``deep`` is ``dnn``; for DCN-V2 ``dnn(cross(x0))`` (stacked) or
    ``[cross(x0), dnn(x0)]`` (parallel). A custom model (``config.is_custom``)
    replaces the whole sum: ``logit = custom(x)``.

    ``call`` returns logits ``[batch, 1]``. Logged metrics: ``loss``, ``auc``,
    ``logloss`` (``val_*`` on validation data, so training can early-stop on
    ``val_auc``).
    """

    def __init__(self, layout: FeatureLayout | Mapping[str, Any],
                 config: ModelConfig | Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        layout = layout if isinstance(layout, FeatureLayout) else FeatureLayout.from_dict(layout)
        config = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(config)
        self.layout, self.model_config = layout, config
        self.dense_names = tuple(f.name for f in layout.dense)
        self.piecewise = None if config.numeric_encoding == "bucket" else config.numeric_encoding
        self.linear: Linear | None = None
        self.embedding = self.fm = self.hadamard = self.cross = self.dnn = self.deep_head = None
        self.custom, self.custom_inputs = None, None
        if config.is_custom:  # the caller's model gives the whole logit
            self.custom, self.custom_inputs = custom_model(layout, config)
        else:
            self.linear = Linear(layout.sparse, self.dense_names, layout.global_index,
                                 l2=config.linear_l2, piecewise=self.piecewise, name="linear")
            if config.model != "lr":
                self._build_deep_part(layout, config)
        # Platt scaling (a, b) of the serving log-odds, fitted after training (model.calibration)
        self.platt = self.add_weight(shape=(2,), initializer=keras.initializers.Constant([1.0, 0.0]),
                                     trainable=False, name="platt")
        self.wide_optimizer: keras.optimizers.Optimizer | None = None
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.auc = keras.metrics.AUC(num_thresholds=config.auc_num_thresholds, from_logits=True,
                                     name="auc")
        self.logloss = keras.metrics.BinaryCrossentropy(from_logits=True, name="logloss")

    def _build_deep_part(self, layout: FeatureLayout, config: ModelConfig) -> None:
        fields = [f for f in layout.sparse if not f.wide_only]  # crosses stay wide-only
        if not fields and layout.global_index is None:
            raise ValueError(f"{config.model} needs at least one non-wide_only sparse field "
                             "or a global index to embed")
        self.embedding = FieldEmbedding(
            fields, config.embedding_dim, layout.global_index, l2=config.embedding_l2, piecewise=self.piecewise,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=config.embedding_init_stddev),
            name="embedding")
        if config.model == "deepfm":
            self.fm = FMSecondOrder(name="fm")
        if config.hadamard_groups:
            groups = [[i for i, f in enumerate(fields) if f.group == g] for g in config.hadamard_groups]
            for name, members in zip(config.hadamard_groups, groups):
                if not members:
                    raise ValueError(f"hadamard group {name!r}: no embedded field has this group")
            self.hadamard = Hadamard(*groups, name="hadamard")
        if config.model == "dcnv2":
            self.cross = CrossNetwork(config.cross_layers, config.cross_rank, config.kernel_l2, name="cross")
        self.dnn = DNN(config.hidden_units, config.residual, config.activation, config.dropout,
                       config.norm, config.kernel_l2, config.residual_gate_init, name="dnn")
        self.deep_head = keras.layers.Dense(1, name="deep_head")

    def call(self, features: Mapping[str, Any], training: bool = False):
        if self.custom is not None:
            inputs = features if self.custom_inputs is None else {n: features[n] for n in self.custom_inputs}
            return ops.reshape(ops.cast(self.custom(inputs, training=training), "float32"), (-1, 1))
        logit = self.linear(features, training=training)
        if self.embedding is None:
            return logit
        fields = self.embedding(features, training=training)
        if self.fm is not None:
            logit = logit + self.fm(fields)
        x0 = self._deep_input(fields, features)
        if self.cross is None:
            deep = self.dnn(x0, training=training)
        elif self.model_config.cross_structure == "stacked":
            deep = self.dnn(self.cross(x0), training=training)
        else:  # parallel
            deep = ops.concatenate([self.cross(x0), self.dnn(x0, training=training)], axis=1)
        return logit + self.deep_head(deep)

    def _deep_input(self, fields, features: Mapping[str, Any]):
        """Flattened field embeddings, [+ Hadamard user x item], [+ dense values]."""
        parts = [ops.reshape(fields, (-1, self.embedding.num_fields * self.embedding.dim))]
        if self.hadamard is not None:
            parts.append(self.hadamard(fields))
        if self.dense_names:
            parts.append(stack_dense(features, self.dense_names))
        return parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=1)

    def probabilities(self, features: Mapping[str, Any]):
        """Serving probabilities: sigmoid, corrected for negative downsampling and class weights,
        then Platt-scaled when ``config.calibration == 'platt'``.

        Keeping negatives at rate r multiplies the training odds by 1/r and
        weighting positives by w multiplies them by w: one correction with
        the effective rate r / w undoes both (in log-odds: + log(r / w)).
        """
        rate = self.model_config.negative_keep_rate / self.model_config.positive_weight
        if self.model_config.calibration == "platt":
            log_odds = self.log_odds(features)
            return ops.sigmoid(self.platt[0] * log_odds + self.platt[1])
        p = ops.sigmoid(self(features, training=False))
        return p if rate == 1.0 else calibrate_downsampled(p, rate)

    def log_odds(self, features: Mapping[str, Any]):
        """Log-odds before Platt scaling, corrected for downsampling and class weights."""
        rate = self.model_config.negative_keep_rate / self.model_config.positive_weight
        logits = self(features, training=False)
        return logits if rate == 1.0 else logits + float(np.log(rate))

    # ----------------------------------------------------------------- training

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return [self.loss_tracker, self.auc, self.logloss]

    def compile(self, optimizer: Any = "adam",
                wide_optimizer: keras.optimizers.Optimizer | None = None, **kwargs: Any) -> None:
        """Keras ``compile`` plus an optional optimiser for the ``linear`` weights.

        Losses and metrics are fixed by the config (see ``train_step``), so
        ``loss``/``metrics`` must not be passed. Optimisers are built here, each
        on its own variables, so neither keeps slots for the other's weights.
        """
        if "loss" in kwargs or "metrics" in kwargs:
            raise ValueError("CTRModel's loss and metrics come from its ModelConfig")
        super().compile(optimizer=optimizer, **kwargs)
        if not self.built:
            self(dummy_features(self.layout))
        self.wide_optimizer = wide_optimizer
        wide, deep = self._variable_groups()
        if wide_optimizer is not None and not wide_optimizer.built:
            wide_optimizer.build(wide)
        if not self.optimizer.built:
            self.optimizer.build(deep)

    def _variable_groups(self) -> tuple[list, list]:
        """(wide optimiser's variables, main optimiser's variables)."""
        if self.wide_optimizer is None or self.linear is None:
            return [], list(self.trainable_variables)
        wide = list(self.linear.trainable_variables)
        wide_ids = {id(v) for v in wide}
        return wide, [v for v in self.trainable_variables if id(v) not in wide_ids]

    def _forward(self, x: Mapping[str, Any]):
        """Training-mode logits and this pass's regularisation losses."""
        logits = self(x, training=True)
        return logits, sum(self.losses, ops.zeros(()))

    def train_step(self, data: Any) -> dict[str, Any]:
        """One step; under a tf.distribute strategy, one replica's part of the global batch's step.

        A replica's loss (the mean over its own rows, + regularisation) is
        multiplied by its share of the global batch's rows (or sample weights):
        its rows / the all-reduced rows of every replica. The all-reduce sums
        the replicas' gradients, which is then the gradient of the global
        batch's mean loss, and the regularisation counted once (the shares
        sum to 1): 1 or N replicas take the same step, a short or empty last
        batch included. The pairwise loss forms its pairs within each
        replica's batch (``model.inputs.make_pair_dataset`` runs per replica).
        """
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            if self.model_config.loss == "pairwise":
                loss, y, logits, sample_weight = self._pairwise_loss(x)
            else:
                y, sample_weight = _column(y), _column(sample_weight)
                loss, logits = self._pointwise_loss(x, y, sample_weight)
            scaled = loss
            if replicas > 1:
                rows = tf.cast(tf.shape(logits)[0], tf.float32)
                weighted = self.layout.weight is not None and sample_weight is not None
                part = tf.reduce_sum(sample_weight) if weighted else rows  # what the loss's mean divides by
                whole = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, part)
                scaled = loss * tf.math.divide_no_nan(part, whole)
                loss = tf.where(rows > 0, loss, 0.0)  # an empty replica batch's mean is NaN: tracked with weight 0
        wide, deep = self._variable_groups()
        grads = tape.gradient(scaled, wide + deep)
        if wide:
            self.wide_optimizer.apply_gradients(zip(grads[:len(wide)], wide))
        if deep:
            self.optimizer.apply_gradients(zip(grads[len(wide):], deep))
        logs = self._update_metrics(loss, y, logits, sample_weight)
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras 3.15 mean-reduces a step's logs over the workers along axis 0, which a scalar lacks. Per batch
            # only: the epoch's logs are read from the metrics themselves, summed over every replica.
            logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
        return logs

    def _pointwise_loss(self, x: Mapping[str, Any], y, sample_weight):
        """Log loss; with R-Drop, the mean over two dropout passes + alpha * their KL."""
        logits, reg = self._forward(x)
        loss = self._log_loss(y, logits, sample_weight) + reg
        alpha = self.model_config.rdrop_alpha
        if alpha > 0:
            logits_b, reg_b = self._forward(x)
            loss_b = self._log_loss(y, logits_b, sample_weight) + reg_b
            rows = sample_weight if self.layout.weight is not None else None  # sample weights weigh the KL too
            loss = 0.5 * (loss + loss_b) + alpha * rdrop_kl(logits, logits_b, rows)
        return loss, logits

    def _log_loss(self, y, logits, sample_weight):
        """``log_loss``; with the schema's sample weights (``layout.weight``) their weighted mean
        (``weighted_log_loss``: integer weights give the loss of duplicated rows)."""
        if self.layout.weight is None or sample_weight is None:
            return log_loss(y, logits, sample_weight)
        return weighted_log_loss(y, logits, sample_weight)

    def _pairwise_loss(self, x: Mapping[str, Mapping[str, Any]]):
        """RankNet loss on ``x = {"pos": features, "neg": features}`` (labels unused).

        Returns the loss plus labels (1 for pos, 0 for neg), logits and the
        pairs' weights (None without sample weights), so AUC/log loss are still
        tracked on the pairs' examples.
        """
        s_pos, reg_pos = self._forward(x["pos"])
        s_neg, reg_neg = self._forward(x["neg"])
        pair_weight = _column(x.get("weight"))  # sample weights: the product of the pair's two (model.inputs)
        loss = pairwise_logistic_loss(s_pos, s_neg, pair_weight) + 0.5 * (reg_pos + reg_neg)
        labels = ops.concatenate([ops.ones_like(s_pos), ops.zeros_like(s_neg)], axis=0)
        weights = None if pair_weight is None else ops.concatenate([pair_weight, pair_weight], axis=0)
        return loss, labels, ops.concatenate([s_pos, s_neg], axis=0), weights

    def test_step(self, data: Any) -> dict[str, Any]:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y, sample_weight = _column(y), _column(sample_weight)
        logits = self(x, training=False)
        loss = self._log_loss(y, logits, sample_weight) + sum(self.losses, ops.zeros(()))
        return self._update_metrics(loss, y, logits, sample_weight)

    def _update_metrics(self, loss, y, logits, sample_weight) -> dict[str, Any]:
        self.loss_tracker.update_state(loss, sample_weight=ops.shape(logits)[0])
        self.auc.update_state(y, logits, sample_weight=sample_weight)
        self.logloss.update_state(y, logits, sample_weight=sample_weight)
        return {m.name: m.result() for m in self.metrics}

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "layout": dataclasses.asdict(self.layout),
                "config": self.model_config.to_dict()}


def _column(t):
    """Labels/weights as float32 ``[batch, 1]`` whether they come as [batch] or [batch, 1]."""
    return None if t is None else ops.reshape(ops.cast(t, "float32"), (-1, 1))


def build_model(layout: FeatureLayout, config: ModelConfig) -> CTRModel:
    """The model ``config.model`` names, with its variables created (a custom one inside a ``CTRModel``)."""
    model = CTRModel(layout, config, name="custom" if config.is_custom else config.model)
    model(dummy_features(layout))
    return model


def learning_rate(config: ModelConfig) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The main learning rate, or its decay schedule.

    ``plateau`` starts constant: ``model.callbacks.make_callbacks`` lowers the
    rate when validation AUC stalls (it needs the epoch's metric, so it is a
    callback, not a step schedule).
    """
    if config.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(config.learning_rate, config.decay_steps)
    if config.lr_schedule == "exponential":
        return keras.optimizers.schedules.ExponentialDecay(
            config.learning_rate, config.decay_steps, config.decay_rate)
    return config.learning_rate


def make_optimizer(name: str, lr: Any, config: ModelConfig) -> keras.optimizers.Optimizer:
    """Optimiser ``name``; with ``config.sparse_updates`` the row-sparse variant (model.optimizers)."""
    common = {"learning_rate": lr, "clipnorm": config.clipnorm}
    sparse = config.sparse_updates and not config.jit_compile  # XLA needs the static shapes of dense updates
    if config.row_weight_decay and not (name == "adam" and sparse):
        logging.getLogger(__name__).info(
            "row_weight_decay %g is ignored by %s (it needs adam with sparse updates, no jit_compile)",
            config.row_weight_decay, name if sparse else f"dense {name}")
    if name == "adam":
        return LazyAdam(**common, row_weight_decay=config.row_weight_decay) if sparse else \
            keras.optimizers.Adam(**common)
    if name == "adamw":  # decoupled weight decay touches every row each step: dense by nature
        return keras.optimizers.AdamW(weight_decay=config.weight_decay, **common)
    if name == "adagrad":
        return (SparseAdagrad if sparse else keras.optimizers.Adagrad)(**common)
    if name == "sgd":  # Keras' SGD already applies IndexedSlices as a scatter
        return keras.optimizers.SGD(**common)
    if name == "ftrl":
        return (SparseFtrl if sparse else keras.optimizers.Ftrl)(
            l1_regularization_strength=config.ftrl_l1, l2_regularization_strength=config.ftrl_l2, **common)
    raise ValueError(f"unknown optimizer {name!r}")


def compile_model(model: CTRModel, config: ModelConfig) -> CTRModel:
    """Compile with the config's optimiser(s), schedule and XLA setting."""
    wide = (make_optimizer(config.wide_optimizer, config.wide_learning_rate, config)
            if config.wide_optimizer else None)
    main = make_optimizer(config.optimizer, learning_rate(config), config)
    if config.linear_row_weight_decay is not None and model.linear is not None:  # the linear weights' optimiser
        holder = wide if wide is not None else main
        if isinstance(holder, LazyAdam):  # the optimiser that applies row decay (make_optimizer)
            holder.set_row_weight_decay(model.linear.trainable_variables, config.linear_row_weight_decay)
        elif config.linear_row_weight_decay:
            logging.getLogger(__name__).info(
                "linear_row_weight_decay %g is ignored: the linear weights' optimiser is %s, not adam with "
                "sparse updates", config.linear_row_weight_decay, type(holder).__name__)
    model.compile(optimizer=main, wide_optimizer=wide, jit_compile=config.jit_compile,
                  steps_per_execution=config.steps_per_execution)
    return model

"""Custom models for ``--model custom_model_example:NAME`` (tests/test_custom_model.py).

``build`` is the README's example: a functional Keras model over ctrflow's
feature dict, embedding the fields with ctrflow's ``FieldEmbedding`` (so a
warm start copies its rows by token) and adding a small MLP. The others are
broken on purpose, one way each.
"""
from __future__ import annotations

import keras

from ctrflow.model.config import ModelConfig
from ctrflow.model.layers import FieldEmbedding, stack_dense
from ctrflow.model.models import keras_inputs
from ctrflow.pipeline.layout import FeatureLayout


def build(layout: FeatureLayout, config: ModelConfig) -> keras.Model:
    inputs = keras_inputs(layout)  # {name: keras.Input} of every feature the model is given
    embedded = [f for f in layout.sparse if not f.wide_only]
    fields = FieldEmbedding(embedded, config.embedding_dim, name="embedding")(inputs)  # [batch, fields, dim]
    parts = [keras.layers.Flatten()(fields)]
    if layout.dense:
        parts.append(stack_dense(inputs, [f.name for f in layout.dense]))
    x = parts[0] if len(parts) == 1 else keras.layers.Concatenate()(parts)
    for units in config.hidden_units:
        x = keras.layers.Dense(units, activation="relu")(x)
        x = keras.layers.Dropout(config.dropout)(x)
    return keras.Model(inputs, keras.layers.Dense(1, name="logit")(x), name="my_mlp")


class Subclassed(keras.Model):
    """A subclassed model: called with the whole feature dict."""

    def __init__(self, layout: FeatureLayout, **kwargs):
        super().__init__(**kwargs)
        self.first = layout.sparse[0]
        self.table = keras.layers.Embedding(self.first.num_ids, 1, name="bias_per_id")

    def call(self, features, training=False):
        return keras.ops.reshape(self.table(features[self.first.name]), (-1,))  # [batch]: also one logit per row


def build_subclassed(layout: FeatureLayout, config: ModelConfig) -> keras.Model:
    return Subclassed(layout, name="subclassed")


def two_logits(layout: FeatureLayout, config: ModelConfig) -> keras.Model:
    inputs = keras_inputs(layout)
    x = stack_dense(inputs, [f.name for f in layout.dense])
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def not_a_model(layout: FeatureLayout, config: ModelConfig):
    return keras.layers.Dense(1)


def unknown_input(layout: FeatureLayout, config: ModelConfig) -> keras.Model:
    price = keras.Input(shape=(), name="price")
    other = keras.Input(shape=(), name="no_such_feature")
    return keras.Model({"price": price, "no_such_feature": other}, keras.layers.Dense(1)(
        keras.ops.stack([price, other], axis=1)))


NOT_CALLABLE = 3

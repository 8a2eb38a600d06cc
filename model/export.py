"""The one serving SavedModel: tf.Transform graph + Keras model, raw features in.

``tft.TFTransformOutput.transform_features_layer()`` is a legacy tf_keras
object and our models are Keras 3, so both live in a plain ``tf.Module`` whose
``tf.function`` signatures are saved with ``tf.saved_model.save``:

- ``serving_default``: every raw feature as the text of the input file
  (``tf.string [batch]``, e.g. ``" Private"``, ``"?"``, ``"39"``) ->
  ``{"score": probability [batch]}``. Strip, null markers and number parsing
  happen inside the graph (``pipeline.raw_values``), exactly as the batch job's
  parser does them, so a client never re-implements them.
- ``serve_tf_examples``: serialized raw ``tf.Example``s (``examples``), each
  feature a bytes_list with the field's text (absent = missing) -> ``{"score"}``;
  what TF Serving and tfx_bsl's RunInference call.
- ``score_and_ids``: typed, already normalized raw features (float32 numeric
  with NaN for missing, string categorical with "" for missing; what the batch
  job's parser produces) -> the score plus the transformed ids of every
  bucketized/categorical feature, which scoring profiles for the drift report.
- ``score_transformed``: serialized *transformed* ``tf.Example``s (the
  preprocess job's TFRecords, ``examples``) -> ``{"score"}``; skips the
  transform graph, so ``ctrflow evaluate`` scores exactly what training saw.
- ``batch_score_and_ids``: ``score_and_ids`` with the model part compiled by
  XLA; ``score_features``: transformed features (the model's inputs, e.g.
  from ``loaded.transform``) -> ``{"score"}``, compiled the same way. XLA
  compiles once per input shape, so these are for batch scoring with a fixed
  call size (``ctrflow score`` pads its calls), not for online serving with
  any batch size. On the scoring benchmark the job's path through
  ``score_features`` took 3.4 CPU s per 1M ready rows against 5.0 for
  ``score_and_ids`` (BENCHMARKS.md, batch scoring, floor); scores agree to
  float32 rounding (XLA fuses the float32 ops in another order), ids are
  identical.

The export saves only what the signatures run. The transform graph is traced
once (``ServingModule.transform``) and called by every signature that needs
it, and tf_keras is told not to trace the transform layer's own call
functions: the function library holds the transform graph twice (TFT's loaded
copy and ours) instead of six times. The Keras model is not saved as an
object, only its variables (``model_variables``): Keras 3 would add its own
``serving_default`` trace and every layer to the object graph. The text
signatures normalize their columns as two matrices (``pipeline.raw_values``),
not column by column. Each of these made ``tf.saved_model.load`` of the
benchmark Criteo model faster, and every scoring job and serving process
pays that load at start. The signatures' outputs stayed bit-identical.

``assets.extra/`` carries what scoring needs besides the graph: the schema,
the feature layout, the training profile (drift baseline) and model_info.json
(version). So ``ctrflow score`` needs only the model directory.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os

import tensorflow as tf

from ctrflow.common.compat.keras import without_layer_traces
from ctrflow.model import artifact
from ctrflow.model.artifact import ExportedModel, ModelMetadata, load_metadata  # noqa: F401
from ctrflow.model.inputs import model_features
from ctrflow.model.models import feature_spec
from ctrflow.pipeline import artifacts as af
from ctrflow.pipeline import raw_values
from ctrflow.pipeline.layout import FeatureLayout
from ctrflow.pipeline.transform import raw_feature_spec
from ctrflow.schemas import Schema


def _tf_variables(model) -> list[tf.Variable]:
    """The tf.Variables of a Keras model, or of every member of a ``SeedEnsemble`` (a tf.Module of models)."""
    members = getattr(model, "members", None)
    return [getattr(v, "value", v) for m in (members if members is not None else [model]) for v in m.variables]


class ServingModule(tf.Module):
    """Raw features -> transform graph -> model -> probability."""

    def __init__(self, model, tft_output, schema: Schema, layout: FeatureLayout):
        super().__init__(name="ctrflow_serving")
        # a bound method is not tracked, so the Keras objects stay out of the SavedModel; the tf.Variables
        # the signatures capture (a Keras 3 variable's ``value``) are saved as a list
        self._probabilities = model.probabilities
        self.model_variables = _tf_variables(model)
        self.tft_layer = tft_output.transform_features_layer()
        self._layout = layout
        self._schema = schema
        self._raw_spec = raw_feature_spec(schema, with_label=False)
        self._id_names = [f.name for f in layout.sparse if not f.wide_only]
        self._multivalent = tuple(f.name for f in layout.sparse if f.multivalent)
        not_inputs = {layout.label, layout.group_key, layout.weight}  # scoring needs no weight
        self._transformed_spec = {k: v for k, v in tft_output.transformed_feature_spec().items()
                                  if k not in not_inputs}
        # typed raw features -> transformed features; saved too (``loaded.transform``), e.g. to inspect ids
        self.transform = tf.function(self.tft_layer, input_signature=[self._raw_signature()])
        # the model part of ``batch_score_and_ids``, compiled by XLA (hash-table lookups cannot be: the transform
        # stays outside); XLA compiles once per input shape, hence the fixed batch and padded id widths
        self._compiled_scores = tf.function(self._scores, jit_compile=True, autograph=False)

    def _raw_signature(self) -> dict[str, tf.TensorSpec]:
        """Typed raw features, [batch] each (what ``score_and_ids`` and ``transform`` take)."""
        return {name: tf.TensorSpec([None], f.dtype, name=name) for name, f in self._raw_spec.items()}

    def _scores(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        return tf.reshape(self._probabilities(features), [-1])

    def _ids(self, transformed: dict) -> dict[str, tf.Tensor]:
        """Every embedded feature's ids, dense (ragged ones padded with -1), for the drift profile."""
        out = {}
        for name in self._id_names:
            t = transformed[name]
            out[name] = t.to_tensor(-1) if isinstance(t, tf.RaggedTensor) else t
        return out

    def _score_and_transformed(self, raw: dict[str, tf.Tensor]):
        # every signature calls the one traced transform: the transform graph is saved once, not once per signature
        transformed = self.transform(raw)
        return self._scores(model_features(transformed, self._layout)), transformed

    def signatures(self) -> dict:
        text_sig = {name: tf.TensorSpec([None], tf.string, name=name) for name in self._raw_spec}

        @tf.function(input_signature=[text_sig])
        def serving_default(text):
            raw = raw_values.normalize(self._schema, text)
            return {"score": self._score_and_transformed(raw)[0]}

        @tf.function(input_signature=[self._raw_signature()])
        def score_and_ids(raw):
            score, transformed = self._score_and_transformed(raw)
            return {"score": score, **self._ids(transformed)}

        @tf.function(input_signature=[self._raw_signature()])
        def batch_score_and_ids(raw):
            transformed = self.transform(raw)
            features = _power_of_two_widths(model_features(transformed, self._layout), self._multivalent)
            return {"score": self._compiled_scores(features), **self._ids(transformed)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve_tf_examples(examples):
            raw = raw_values.parse_examples(self._schema, examples)
            return {"score": self._score_and_transformed(raw)[0]}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def score_transformed(examples):
            transformed = tf.io.parse_example(examples, self._transformed_spec)
            return {"score": self._scores(model_features(transformed, self._layout))}

        @tf.function(input_signature=[feature_spec(self._layout)])
        def score_features(features):
            return {"score": self._compiled_scores(_power_of_two_widths(features, self._multivalent))}

        return {"serving_default": serving_default, "score_and_ids": score_and_ids,
                "batch_score_and_ids": batch_score_and_ids, "score_features": score_features,
                "serve_tf_examples": serve_tf_examples, "score_transformed": score_transformed}


def _power_of_two_widths(features: dict[str, tf.Tensor], multivalent: tuple[str, ...]) -> dict[str, tf.Tensor]:
    """Multivalent id matrices padded with -1 (no id) to the next power-of-two width.

    A batch's widest row sets a multivalent field's width, and XLA compiles
    the model once per input shape: rounding the width up bounds the compiles
    to a handful (1, 2, 4, ... ids) while the -1 columns change no score.
    """
    out = dict(features)
    for name in multivalent:
        ids = features[name]
        width = tf.shape(ids)[1]
        target = tf.bitwise.left_shift(1, tf.cast(tf.math.ceil(
            tf.math.log(tf.cast(tf.maximum(width, 1), tf.float32)) / tf.math.log(2.0) - 1e-6), tf.int32))
        out[name] = tf.pad(ids, [[0, 0], [0, target - width]], constant_values=-1)
    return out


def export(model, tft_output, schema: Schema, layout: FeatureLayout, export_dir: str, *,
           schema_text: str, train_stats: dict | None, extra_info: dict | None = None) -> dict:
    """Saves the serving SavedModel and its assets.extra; returns model_info."""
    module = ServingModule(model, tft_output, schema, layout)
    with without_layer_traces():  # the tf_keras transform layer's calls not traced again: nothing revives it
        tf.saved_model.save(module, export_dir, signatures=module.signatures())
    with tf.io.gfile.GFile(os.path.join(export_dir, af.SAVED_MODEL), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    now = datetime.datetime.now(datetime.timezone.utc)
    info = {
        "version": f"{now:%Y%m%dT%H%M%SZ}-{digest}",
        "exported_at": now.isoformat(),
        "raw_features": list(module._raw_spec),
        **(extra_info or {}),
    }
    files = {af.SCHEMA: schema_text, af.LAYOUT: layout.to_json(), af.MODEL_INFO: json.dumps(info, indent=2)}
    if train_stats is not None:
        files[af.STATS] = json.dumps(train_stats)
    af.ExportArtifacts(export_dir).write_extra(files)
    return info


def load(model_path: str) -> ExportedModel:
    """Loads the SavedModel (``tf.saved_model.load``) with its metadata."""
    return artifact.load(model_path)

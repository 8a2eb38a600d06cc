"""A Beam RunInference ``ModelHandler`` for ctrflow's serving SavedModel.

Beam's stock ``TFModelHandler`` loads through ``tf.keras.models.load_model``
(legacy Keras once tensorflow_transform is imported) and tensorflow_hub, which
cannot load a ``tf.Module`` export. This handler calls ``tf.saved_model.load``
once per worker (RunInference shares the loaded model across threads) and
scores whole Arrow batches: the elements are clean ``RecordBatch``es, so ids
and passthrough columns travel with their rows and come back in the
``PredictionResult.example``.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from model import export as exporter


def batch_to_tensors(batch: pa.RecordBatch, raw_spec_names: Sequence[str], dtypes: dict[str, Any]):
    """Clean Arrow columns -> the serving signature's input tensors."""
    import tensorflow as tf

    out = {}
    for name in raw_spec_names:
        col = batch.column(name)
        if dtypes[name] == tf.string:
            out[name] = tf.constant(col.to_numpy(zero_copy_only=False).astype(object))
        else:
            out[name] = tf.constant(col.to_numpy(zero_copy_only=False).astype(np.float32, copy=False))
    return out


class ServingModelHandler(ModelHandler[pa.RecordBatch, PredictionResult, exporter.ExportedModel]):
    """RunInference over RecordBatches with the ``score_and_ids`` signature."""

    def __init__(self, model_path: str, signature: str = "score_and_ids"):
        self._model_path = model_path
        self._signature = signature

    def load_model(self) -> exporter.ExportedModel:
        return exporter.load(self._model_path)

    def run_inference(self, batch: Sequence[pa.RecordBatch], model: exporter.ExportedModel,
                      inference_args: dict[str, Any] | None = None) -> Iterable[PredictionResult]:
        fn = model.signature(self._signature)
        specs = fn.structured_input_signature[1]
        names = list(specs)
        dtypes = {n: specs[n].dtype for n in names}
        for rb in batch:
            outputs = fn(**batch_to_tensors(rb, names, dtypes))
            yield PredictionResult(rb, {k: v.numpy() for k, v in outputs.items()}, model.info.get("version"))

    def batch_elements_kwargs(self) -> dict[str, int]:
        # each element is already a batch of many rows
        return {"min_batch_size": 1, "max_batch_size": 1}

    def share_model_across_processes(self) -> bool:
        return False

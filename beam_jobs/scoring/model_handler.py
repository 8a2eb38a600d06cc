"""A Beam RunInference ``ModelHandler`` for ctrflow's serving SavedModel.

Beam's stock ``TFModelHandler`` loads through ``tf.keras.models.load_model``
(legacy Keras once tensorflow_transform is imported) and tensorflow_hub, which
cannot load a ``tf.Module`` export. This handler calls ``tf.saved_model.load``
once per worker (RunInference shares the loaded model across threads) and
scores whole Arrow batches: the elements are clean ``RecordBatch``es, so ids
and passthrough columns travel with their rows and come back in the
``PredictionResult.example``.

Arrow -> tensor conversion (``arrow_tensors.PackedBatch``) never makes a
Python object per value and packs a batch once for all its model calls.
Each process chooses its scoring path once per model (``scoring_path``):
each column's distinct values + the XLA-compiled model where the schema
allows it (``distinct_values``), else the compiled ``batch_score_and_ids``,
else ``score_and_ids``; a compiled path whose first call fails is logged and
skipped. For the distinct-values path only its two functions are loaded
(``artifact.load_parts``), the whole export where that fails.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import threading
import time
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

import ctrflow.beam_jobs.coders  # noqa: F401 - registers the Arrow/PredictionResult coders
from ctrflow.beam_jobs.scoring.arrow_tensors import (
    INFERENCE_BATCH_ROWS,
    PackedBatch,
    SignatureColumns,
    missing_values_batch,
    numpy_dtypes,
    slices,
)
from ctrflow.beam_jobs.scoring.distinct_values import UniqueValueScorer
from ctrflow.common.compat.tensorflow import disable_graph_optimizer, serving_runtime
from ctrflow.model import artifact


def _concat(arrays: list[np.ndarray]) -> np.ndarray:
    """Concatenates along rows; id matrices of different widths are padded with -1 first."""
    if len(arrays) == 1:
        return arrays[0]
    if arrays[0].ndim < 2 or len({a.shape[1:] for a in arrays}) == 1:
        return np.concatenate(arrays)
    width = max(a.shape[1] for a in arrays)
    return np.concatenate([np.pad(a, [(0, 0), (0, width - a.shape[1])], constant_values=-1) for a in arrays])


_PRELOADED: dict[str, concurrent.futures.Future] = {}
_PRELOAD_LOCK = threading.Lock()


def _configure_tensorflow(threads: int) -> None:
    """Thread counts (0: TensorFlow's choice) and no graph optimizer pass for the serving functions.

    Grappler rewrites a function's graph on its first call, which lengthened
    the model's warm-up on the benchmark model and bought no throughput
    (score_and_ids on 8192-row calls took the same CPU either way). A scoring process runs nothing else in
    TensorFlow, so the setting is safe to make process-wide here.
    """
    tf = serving_runtime()
    disable_graph_optimizer(tf)  # compat.tensorflow: Grappler off, process-wide
    if not threads:
        return
    try:
        tf.set_intra_op_threads(threads)
        tf.set_inter_op_threads(threads)
    except RuntimeError:  # TF already initialised in this process: keep its settings
        pass


# The signatures the job can score with, best first: ``batch_score_and_ids`` runs the model part compiled by
# XLA (less CPU than score_and_ids on the benchmark model, scores equal to float32 rounding, ids identical) and is
# called with fixed-size slices, so it compiles once; exports before it have only ``score_and_ids``.
COMPILED_SIGNATURE = "batch_score_and_ids"
SCORING_SIGNATURES = (COMPILED_SIGNATURE, "score_and_ids")


def _pad_rows(signature: str, inference_batch_size: int) -> int:
    """Rows every call of ``signature`` is padded to (0: no padding)."""
    return inference_batch_size if signature == COMPILED_SIGNATURE else 0


@dataclasses.dataclass(frozen=True)
class ScoringPath:
    """How a loaded model scores a RecordBatch: the distinct-values scorer, or a signature on row slices."""

    scorer: UniqueValueScorer | None
    signature: str
    rows_per_call: int  # slice size (0: the whole batch in one call)
    pad_to: int  # every call padded to this many rows (compiled signatures), 0: no padding

    def describe(self) -> str:
        return "distinct values + score_features" if self.scorer is not None else self.signature

    def score(self, model: artifact.ExportedModel, rb: pa.RecordBatch) -> dict[str, np.ndarray]:
        """``{"score": [rows], id name: [rows]}`` for one batch."""
        if self.scorer is not None:
            return self.scorer(rb)
        fn = model.signature(self.signature)
        packed = PackedBatch.pack(rb, SignatureColumns.from_specs(fn.structured_input_signature[1]))
        parts = [(fn(**packed.tensors(a, b, self.pad_to)), b - a) for a, b in slices(rb.num_rows, self.rows_per_call)]
        return {k: _concat([p[k].numpy()[:n] for p, n in parts]) for k in parts[0][0]}

    def warm(self, model: artifact.ExportedModel) -> None:
        """One call on a one-row batch of missing values: loads what the first call loads, compiles XLA."""
        if self.scorer is not None:
            self.scorer.warm()
            return
        specs = model.signature(self.signature).structured_input_signature[1]
        self.score(model, missing_values_batch(numpy_dtypes(specs)))


_PATHS_LOCK = threading.Lock()
_LOGGED: set[tuple] = set()


def scoring_path(model: artifact.ExportedModel, requested: str | None = None,
                 inference_batch_size: int = INFERENCE_BATCH_ROWS) -> ScoringPath:
    """The fastest path that works in this process, checked once per model with a warm-up call.

    Best first: each column's distinct values + the compiled model
    (``beam_jobs.scoring.distinct_values``), the compiled ``batch_score_and_ids``,
    ``score_and_ids``. A compiled path whose first call fails (e.g. a
    TensorFlow build without XLA's CPU compiler) is logged and skipped, so a
    job still scores with the plain signature. ``requested`` names one
    signature and skips the choice.
    """
    # cached on the model object itself (an id() key could name a later model after this one is freed)
    paths = vars(model).setdefault("_scoring_paths", {})
    key = (requested, inference_batch_size)
    with _PATHS_LOCK:  # not held while warming (the first calls and the XLA compile: about half a second)
        if key in paths:
            return paths[key]
    candidates = []
    scorer = None if requested else UniqueValueScorer.create(model, inference_batch_size)
    if scorer is not None:
        candidates.append(ScoringPath(scorer, "score_features", inference_batch_size, inference_batch_size))
    if model.partial:  # loaded for the distinct-values path only: the caller loads the whole export otherwise
        if not candidates:
            raise ValueError("the partly loaded model cannot score with distinct values")
    else:
        available = model.loaded.signatures
        signatures = [requested] if requested else [s for s in SCORING_SIGNATURES if s in available]
        candidates += [ScoringPath(None, s, inference_batch_size, _pad_rows(s, inference_batch_size))
                       for s in signatures or SCORING_SIGNATURES[-1:]]
    for i, path in enumerate(candidates):
        try:
            path.warm(model)
        except Exception as e:  # noqa: BLE001 - the last candidate's failure propagates
            if i == len(candidates) - 1:
                raise
            logging.warning("scoring with %s failed its first call (%s: %s); scoring with %s instead",
                            path.describe(), type(e).__name__, str(e)[:300], candidates[i + 1].describe())
            continue
        with _PATHS_LOCK:
            said = (model.meta.path, key, path.describe())
            if said not in _LOGGED:  # once per process and model
                _LOGGED.add(said)
                logging.info("scoring with %s, %d rows per model call", path.describe(), path.rows_per_call)
            return paths.setdefault(key, path)
    raise AssertionError("unreachable")


def _load_and_warm(meta: artifact.ModelMetadata, threads: int, signature: str | None,
                   inference_batch_size: int = INFERENCE_BATCH_ROWS) -> artifact.ExportedModel:
    """Imports TensorFlow, loads the SavedModel and chooses its scoring path (one warm-up call, the XLA compile).

    The distinct-values path is tried on a load of only the two functions it
    calls (``artifact.load_parts``: faster than the whole export, and the
    load holds the GIL throughout); where that path or the partial load fails,
    the whole export is loaded and the choice made as before.
    """
    _configure_tensorflow(threads)
    if signature is None and UniqueValueScorer.fits(meta.schema):  # crosses etc.: the whole export at once
        try:
            model = artifact.load_parts(meta, UniqueValueScorer.PARTS)
            scoring_path(model, None, inference_batch_size)
            return model
        except Exception as e:  # noqa: BLE001 - any failure: the whole export, every path, as before
            logging.info("loading only the distinct-values path's functions failed (%s: %s); loading the whole "
                         "export", type(e).__name__, str(e)[:300])
    model = artifact.load(meta.path, meta)
    scoring_path(model, signature, inference_batch_size)
    return model


def preload(meta: artifact.ModelMetadata, threads: int = 0, signature: str | None = None,
            inference_batch_size: int = INFERENCE_BATCH_ROWS) -> concurrent.futures.Future:
    """Starts loading the model in a background thread of this process.

    The driver calls this before it plans the reads and starts Beam, so the
    TensorFlow import and ``tf.saved_model.load`` (seconds) overlap the Beam
    import and pipeline start; an in-process runner's ``load_model`` then
    takes the loaded model. Remote workers load their own copy as before.
    """
    with _PRELOAD_LOCK:
        fut = _PRELOADED.get(meta.path)
        if fut is None:
            fut = concurrent.futures.Future()
            _PRELOADED[meta.path] = fut

            def work():
                started = time.time()
                try:
                    model = _load_and_warm(meta, threads, signature, inference_batch_size)
                    fut.load_seconds = round(time.time() - started, 3)  # for the job's manifest
                    fut.set_result(model)
                except BaseException as e:  # noqa: BLE001 - re-raised in load_model
                    fut.set_exception(e)

            threading.Thread(target=work, name="ctrflow-model-preload", daemon=True).start()
        return fut


class _LoadingModel:
    """A model ``preload`` is still loading; it blocks on first use, at the first batch, not in ``setup``.

    RunInference loads its model in ``DoFn.setup``, which the runner calls
    before its stage reads any input: handing it this placeholder lets each
    worker read and parse its first batch while TensorFlow is still being
    imported and the model loaded.
    """

    def __init__(self, future: concurrent.futures.Future):
        self._future = future

    def wait(self) -> artifact.ExportedModel:
        """The loaded model (its scoring path already chosen and warmed by ``preload``)."""
        return self._future.result()

    def __getattr__(self, name: str):
        return getattr(self._future.result(), name)


class ServingModelHandler(ModelHandler[pa.RecordBatch, PredictionResult, artifact.ExportedModel]):
    """RunInference over RecordBatches, on the path ``scoring_path`` chose (``signature`` forces one).

    ``inference_batch_size`` caps the rows of one model call: larger input
    batches are cut into slices and their outputs concatenated, so each
    ``PredictionResult`` still covers exactly one input batch. It defaults to
    ``INFERENCE_BATCH_ROWS``, the size ``ctrflow score`` uses (0: one call per batch).
    The compiled signature's calls are padded to that size (a batch's last
    slice repeats a row; its outputs are dropped), so XLA compiles once.
    """

    def __init__(self, model_path: str, signature: str | None = None,
                 inference_batch_size: int = INFERENCE_BATCH_ROWS,
                 intra_op_threads: int = 0):
        self._model_path = model_path
        self._signature = signature
        self._inference_batch_size = inference_batch_size
        self._intra_op_threads = intra_op_threads

    def load_model(self) -> artifact.ExportedModel:
        with _PRELOAD_LOCK:
            fut = _PRELOADED.get(self._model_path)
        if fut is not None:  # loaded by preload() in this process (in-process runners)
            logging.debug("using the preloaded model %s", self._model_path)
            return fut.result() if fut.done() else _LoadingModel(fut)
        return _load_and_warm(artifact.load_metadata(self._model_path), self._intra_op_threads, self._signature,
                              self._inference_batch_size)

    def run_inference(self, batch: Sequence[pa.RecordBatch], model: artifact.ExportedModel,
                      inference_args: dict[str, Any] | None = None) -> Iterable[PredictionResult]:
        if isinstance(model, _LoadingModel):  # the preloaded model itself: no second scorer and warm-up per worker
            model = model.wait()
        path = scoring_path(model, self._signature, self._inference_batch_size)
        for rb in batch:
            yield PredictionResult(rb, path.score(model, rb), model.info.get("version"))

    def get_num_bytes(self, batch: Sequence[pa.RecordBatch]) -> int:
        return sum(rb.nbytes for rb in batch)  # the default pickles the batch to measure it

    def batch_elements_kwargs(self) -> dict[str, int]:
        # each element is already a batch of many rows
        return {"min_batch_size": 1, "max_batch_size": 1}

    def share_model_across_processes(self) -> bool:
        return False

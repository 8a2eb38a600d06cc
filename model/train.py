"""``ctrflow train``: fit a model on the preprocess output and export it for serving.

Outputs under ``--output`` (MODEL_DIR)::

    export/             the serving SavedModel (transform graph + model), see model.export
    checkpoints/        best weights (by eval AUC) and a backup to resume from
    logs/               TensorBoard logs
    metrics.json        eval metrics of the exported model (exact AUC, log loss, calibration)
    config.json         the model and trainer options used
"""
from __future__ import annotations

import json
import logging
import os
import time

import numpy as np

from ctrflow.model.config import ModelConfig
from ctrflow.model.options import TrainerOptions
from ctrflow.pipeline.logs import setup_logging
from ctrflow.schemas.flags import FlagParser, add_flags, from_namespace


def build_arg_parser() -> FlagParser:
    p = FlagParser(
        prog="ctrflow train",
        description="Train a DeepFM / Wide&Deep / LR model on the TFRecords written by `ctrflow preprocess` and "
                    "export ONE SavedModel that takes raw features (transform graph inside).")
    add_flags(p.add_argument_group("trainer"), TrainerOptions)
    ModelConfig.add_argparse_args(p.add_argument_group("model (also YAML keys of --config)"))
    return p


def parse_options(argv: list[str] | None) -> tuple[TrainerOptions, ModelConfig]:
    """The trainer's options and the model config (YAML of --config, overridden by flags)."""
    ns = build_arg_parser().parse_args(argv)
    trainer = from_namespace(TrainerOptions, ns)
    base = ModelConfig.from_yaml(trainer.config) if trainer.config else None
    return trainer, ModelConfig.from_args(ns, base=base)


def _set_seed(seed: int, deterministic: bool) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def _train_dataset(opts: TrainerOptions, config: ModelConfig, spec: dict, layout):
    """Pairs for the pairwise loss, else (downsampled) shuffled examples."""
    from ctrflow.model.inputs import make_dataset, make_pair_dataset, split_files

    files, repeat = split_files(opts.data, "train"), opts.steps_per_epoch is not None
    if config.loss == "pairwise":
        return make_pair_dataset(files, spec, layout, opts.batch_size, seed=opts.seed, repeat=repeat,
                                 cache=opts.cache, pair_window=opts.pair_window)
    return make_dataset(files, spec, layout, opts.batch_size, shuffle=True, seed=opts.seed, cache=opts.cache,
                        shuffle_buffer=opts.shuffle_buffer, repeat=repeat,
                        negative_keep_rate=config.negative_keep_rate, positive_weight=config.positive_weight)


def predict_split(model, dataset) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) over a dataset of (features, label)."""
    import tensorflow as tf

    predict = tf.function(lambda x: model.probabilities(x))
    labels, probs = [], []
    for x, y in dataset:
        labels.append(y.numpy().reshape(-1))
        probs.append(predict(x).numpy().reshape(-1))
    if not labels:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(labels), np.concatenate(probs)


def run(argv: list[str] | None = None) -> dict:
    """Parses the flags, trains, evaluates and exports; returns the metrics."""
    opts, config = parse_options(argv)
    setup_logging()
    return run_job(opts, config)


def run_job(opts: TrainerOptions, config: ModelConfig) -> dict:
    """Trains, evaluates and exports; returns the metrics (also in MODEL_DIR/metrics.json)."""

    import tensorflow as tf
    import tensorflow_transform as tft

    from ctrflow.model import export as exporter
    from ctrflow.model import metrics as mt
    from ctrflow.model.callbacks import Throughput, make_callbacks
    from ctrflow.model.inputs import make_dataset, split_files
    from ctrflow.model.models import build_model, compile_model
    from ctrflow.pipeline.layout import FeatureLayout
    from ctrflow.schemas import loads_schema

    _set_seed(opts.seed, opts.deterministic)
    t0 = time.time()
    data = opts.data
    with tf.io.gfile.GFile(os.path.join(data, "layout.json")) as f:
        layout = FeatureLayout.from_json(f.read())
    with tf.io.gfile.GFile(os.path.join(data, "schema.yaml")) as f:
        schema_text = f.read()
    schema = loads_schema(schema_text, os.path.join(data, "schema.yaml"))
    stats_path = os.path.join(data, "stats.json")
    train_stats = json.loads(tf.io.gfile.GFile(stats_path).read()) if tf.io.gfile.exists(stats_path) else None
    tft_output = tft.TFTransformOutput(data)
    spec = tft_output.transformed_feature_spec()

    has_eval = bool(tf.io.gfile.glob(split_files(data, "eval")))
    eval_split = "eval" if has_eval else "train"
    if not has_eval:
        logging.warning("no eval split in %s: early stopping and metrics use the training data", data)
    train_ds = _train_dataset(opts, config, spec, layout)
    eval_ds = make_dataset(split_files(data, eval_split), spec, layout, opts.eval_batch_size, shuffle=False,
                           cache=True)

    model = compile_model(build_model(layout, config), config)
    out = opts.output.rstrip("/")
    throughput = Throughput(opts.batch_size)
    callbacks = make_callbacks(out, patience=opts.patience, resume=opts.resume) + [throughput]
    logging.info("training %s on %s (%d sparse, %d dense features)", config.model, data, len(layout.sparse),
                 len(layout.dense))
    history = model.fit(train_ds, validation_data=eval_ds, epochs=opts.epochs,
                        steps_per_epoch=opts.steps_per_epoch, callbacks=callbacks,
                        verbose=opts.verbose)
    train_seconds = time.time() - t0

    labels, probs = predict_split(model, eval_ds)
    metrics = {**mt.summary(labels, probs), "split": eval_split, "epochs_run": len(history.history["loss"]),
               "train_seconds": round(train_seconds, 2),
               "train_examples_per_second": round(throughput.examples_per_second, 1),
               "history": {k: [float(v) for v in vals] for k, vals in history.history.items()}}
    export_dir = os.path.join(out, "export")
    if tf.io.gfile.exists(export_dir):
        tf.io.gfile.rmtree(export_dir)
    info = exporter.export(model, tft_output, schema, layout, export_dir, schema_text=schema_text,
                           train_stats=train_stats,
                           extra_info={"model": config.model, "data": data, "eval_auc": metrics["auc"]})
    metrics["model_version"] = info["version"]
    with tf.io.gfile.GFile(os.path.join(out, "metrics.json"), "w") as f:
        f.write(json.dumps(metrics, indent=2))
    with tf.io.gfile.GFile(os.path.join(out, "config.json"), "w") as f:
        f.write(json.dumps({"model": config.to_dict(), "trainer": opts.to_dict()}, indent=2))
    logging.info("eval AUC %.4f, log loss %.4f on %d rows; exported %s to %s", metrics["auc"], metrics["logloss"],
                 metrics["eval_rows"], info["version"], export_dir)
    return metrics


if __name__ == "__main__":
    run()

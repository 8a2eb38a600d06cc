"""``ctrflow train``: fit a model on the preprocess output and export it for serving.

Outputs under ``--output`` (MODEL_DIR)::

    export/             the serving SavedModel (transform graph + model), see model.export
    checkpoints/        best weights (by validation AUC) and a backup to resume from
    logs/               TensorBoard logs
    metrics.json        eval metrics of the exported (selected) model (exact AUC, log loss, calibration),
                        its validation metrics and the selected epoch

Model selection is honest by default: early stopping and the best-epoch
choice use a validation holdout of the *training* records (``--valid-fraction``,
a stable hash of each record), so the eval split only measures the selected
model. ``--valid-fraction 0`` selects on eval, as earlier versions did: that
reported AUC is optimistic.
    config.json         the model and trainer options used
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time

import numpy as np

from ctrflow.model.config import ModelConfig


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ctrflow train",
        description="Train a DeepFM / Wide&Deep / LR model on the TFRecords written by `ctrflow preprocess` and "
                    "export ONE SavedModel that takes raw features (transform graph inside).")
    p.add_argument("--data", required=True, help="output directory of `ctrflow preprocess`")
    p.add_argument("--output", required=True, help="model directory (MODEL_DIR)")
    p.add_argument("--config", help="model config YAML (keys: the model options below, with underscores); "
                                     "command-line flags override it")
    t = p.add_argument_group("trainer")
    t.add_argument("--batch-size", type=int, default=512,
                   help="training batch size (pairs for the pairwise loss) (default: %(default)s)")
    t.add_argument("--eval-batch-size", type=int, default=8192,
                   help="batch size of evaluation passes (default: %(default)s)")
    t.add_argument("--epochs", type=int, default=10,
                   help="maximum epochs (early stopping may end sooner) (default: %(default)s)")
    t.add_argument("--patience", type=int, default=2,
                   help="epochs without eval AUC improvement before stopping (default: %(default)s)")
    t.add_argument("--valid-fraction", type=float, default=0.1,
                   help="share of the training records (by a stable hash of each record) held out for early "
                        "stopping and model selection, so the eval split is only reported; 0 selects on eval "
                        "(optimistic) (default: %(default)s)")
    t.add_argument("--steps-per-epoch", type=int, default=None,
                   help="batches per epoch (default: one pass over the training data)")
    t.add_argument("--seed", type=int, default=42,
                   help="seed for init, shuffling, sampling and dropout (default: %(default)s)")
    t.add_argument("--deterministic", action="store_true",
                   help="deterministic TF ops: same metrics on every run with the same seed (slower)")
    t.add_argument("--cache", action="store_true",
                   help="parse the training data once and keep its features in memory (much less CPU per epoch; "
                        "~8 bytes per id)")
    t.add_argument("--shuffle-buffer", type=int, default=100_000,
                   help="records in the shuffle buffer without --cache (default: %(default)s)")
    t.add_argument("--pair-window", type=int, default=65_536,
                   help="pairwise loss: records per window within which (positive, negative) pairs of one group "
                        "are formed (see model.inputs) (default: %(default)s)")
    t.add_argument("--resume", action="store_true",
                   help="resume an interrupted run from MODEL_DIR/checkpoints/backup (weights, optimizer state "
                        "and epoch)")
    t.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2),
                   help="Keras progress output: 0 silent, 1 progress bar, 2 one line per epoch")
    ModelConfig.add_argparse_args(p.add_argument_group("model (also YAML keys of --config)"))
    return p


def _set_seed(seed: int, deterministic: bool) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def _train_dataset(args: argparse.Namespace, config: ModelConfig, data: str, spec: dict, layout):
    """Pairs for the pairwise loss, else (downsampled) shuffled examples; never the validation holdout."""
    from ctrflow.model.inputs import make_dataset, make_pair_dataset, split_files

    files, repeat = split_files(data, "train"), args.steps_per_epoch is not None
    holdout = (args.valid_fraction, False)
    if config.loss == "pairwise":
        return make_pair_dataset(files, spec, layout, args.batch_size, seed=args.seed, repeat=repeat,
                                 cache=args.cache, pair_window=args.pair_window, holdout=holdout)
    return make_dataset(files, spec, layout, args.batch_size, shuffle=True, seed=args.seed, cache=args.cache,
                        shuffle_buffer=args.shuffle_buffer, repeat=repeat,
                        negative_keep_rate=config.negative_keep_rate, positive_weight=config.positive_weight,
                        holdout=holdout)


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


def fit_calibration(model, valid_ds) -> dict | None:
    """Platt-scales ``model`` on the validation holdout (``config.calibration == 'platt'``); returns (a, b)."""
    import tensorflow as tf

    from ctrflow.model.calibration import fit_platt

    if model.model_config.calibration != "platt":
        return None
    log_odds = tf.function(lambda x: model.log_odds(x))
    z, y = [], []
    for x, labels in valid_ds:
        z.append(log_odds(x).numpy().reshape(-1))
        y.append(labels.numpy().reshape(-1))
    a, b = fit_platt(np.concatenate(z), np.concatenate(y))
    model.platt.assign([a, b])
    return {"scale": a, "bias": b}


def run(argv: list[str] | None = None) -> dict:
    """Trains, evaluates and exports; returns the metrics (also in MODEL_DIR/metrics.json)."""
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    if not 0.0 <= args.valid_fraction < 1.0:
        parser.error(f"--valid-fraction must be in [0, 1), got {args.valid_fraction}")
    from ctrflow.beam_jobs.options import setup_logging

    setup_logging()
    base = ModelConfig.from_yaml(args.config) if args.config else None
    config = ModelConfig.from_args(args, base=base)

    import tensorflow as tf
    import tensorflow_transform as tft

    from ctrflow.model import export as exporter
    from ctrflow.model.callbacks import Throughput, make_callbacks
    from ctrflow.model import metrics as mt
    from ctrflow.model.inputs import make_dataset, split_files
    from ctrflow.model.models import build_model, compile_model
    from ctrflow.pipeline.layout import FeatureLayout
    from ctrflow.schemas import loads_schema

    _set_seed(args.seed, args.deterministic)
    t0 = time.time()
    data = args.data
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
        logging.warning("no eval split in %s: metrics use the training data", data)
    train_ds = _train_dataset(args, config, data, spec, layout)
    eval_ds = make_dataset(split_files(data, eval_split), spec, layout, args.eval_batch_size, shuffle=False,
                           cache=True)
    if args.valid_fraction > 0:
        valid_ds = make_dataset(split_files(data, "train"), spec, layout, args.eval_batch_size, shuffle=False,
                                cache=True, holdout=(args.valid_fraction, True))
    else:
        logging.warning("--valid-fraction 0: early stopping selects on the %s split, so its reported metrics "
                        "are optimistic", eval_split)
        valid_ds = eval_ds

    model = compile_model(build_model(layout, config), config)
    out = args.output.rstrip("/")
    throughput = Throughput(args.batch_size)
    callbacks = make_callbacks(out, patience=args.patience, resume=args.resume) + [throughput]
    logging.info("training %s on %s (%d sparse, %d dense features)", config.model, data, len(layout.sparse),
                 len(layout.dense))
    history = model.fit(train_ds, validation_data=valid_ds, epochs=args.epochs,
                        steps_per_epoch=args.steps_per_epoch, callbacks=callbacks,
                        verbose=args.verbose)
    train_seconds = time.time() - t0

    platt = fit_calibration(model, valid_ds) if args.valid_fraction > 0 else None
    labels, probs = predict_split(model, eval_ds)
    valid_aucs = history.history.get("val_auc", [])
    metrics = {**mt.summary(labels, probs), "split": eval_split,
               "selected_on": "valid" if args.valid_fraction > 0 else eval_split,
               "valid": mt.summary(*predict_split(model, valid_ds)) if args.valid_fraction > 0 else None,
               "selected_epoch": int(np.argmax(valid_aucs)) + 1 if valid_aucs else None, "platt": platt,
               "epochs_run": len(history.history["loss"]),
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
        trainer = {k: v for k, v in vars(args).items() if k in
                   ("data", "batch_size", "epochs", "patience", "valid_fraction", "steps_per_epoch", "seed",
                    "deterministic",
                    "shuffle_buffer", "pair_window", "cache")}
        f.write(json.dumps({"model": config.to_dict(), "trainer": trainer}, indent=2, default=list))
    logging.info("eval AUC %.4f, log loss %.4f on %d rows; exported %s to %s", metrics["auc"], metrics["logloss"],
                 metrics["eval_rows"], info["version"], export_dir)
    return metrics


if __name__ == "__main__":
    run()

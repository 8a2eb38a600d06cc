"""``ctrflow train``: fit a model on the preprocess output and export it for serving.

Outputs under ``--output`` (MODEL_DIR)::

    export/             the serving SavedModel (transform graph + model), see model.export
    checkpoints/        best weights (by eval AUC) and a backup to resume from
    logs/               TensorBoard logs
    metrics.json        eval metrics of the exported model (exact AUC, log loss, calibration)
    config.json         the model and trainer options used
    promotion.json      with --baseline: both models on the same eval rows, and promote true/false
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
    d = p.add_argument_group("daily loop")
    d.add_argument("--warm-start", metavar="MODEL_DIR",
                   help="start from a previous model: rows copied by token through both vocabularies, other "
                        "weights where shapes match (see model.warm_start)")
    d.add_argument("--baseline", metavar="MODEL_DIR",
                   help="also score this model on the same eval split and write promotion.json")
    d.add_argument("--require-better", type=float, metavar="TOL",
                   help="with --baseline: exit with status 3 when the new eval AUC is below the baseline's by "
                        "more than TOL")
    ModelConfig.add_argparse_args(p.add_argument_group("model (also YAML keys of --config)"))
    return p


def _set_seed(seed: int, deterministic: bool) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def _train_dataset(args: argparse.Namespace, config: ModelConfig, data: str, spec: dict, layout):
    """Pairs for the pairwise loss, else (downsampled) shuffled examples."""
    from ctrflow.model.inputs import make_dataset, make_pair_dataset, split_files

    files, repeat = split_files(data, "train"), args.steps_per_epoch is not None
    if config.loss == "pairwise":
        return make_pair_dataset(files, spec, layout, args.batch_size, seed=args.seed, repeat=repeat,
                                 cache=args.cache, pair_window=args.pair_window)
    return make_dataset(files, spec, layout, args.batch_size, shuffle=True, seed=args.seed, cache=args.cache,
                        shuffle_buffer=args.shuffle_buffer, repeat=repeat,
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
    """Trains, evaluates and exports; returns the metrics (also in MODEL_DIR/metrics.json)."""
    args = build_arg_parser().parse_args(argv)
    if args.require_better is not None and not args.baseline:
        raise ValueError("--require-better TOL compares against --baseline MODEL_DIR; give both")
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
    from ctrflow.pipeline import score_profile
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
        logging.warning("no eval split in %s: early stopping and metrics use the training data", data)
    train_ds = _train_dataset(args, config, data, spec, layout)
    eval_ds = make_dataset(split_files(data, eval_split), spec, layout, args.eval_batch_size, shuffle=False,
                           cache=True)

    model = compile_model(build_model(layout, config), config)
    warm = None
    if args.warm_start:
        from ctrflow.model.warm_start import warm_start

        warm = warm_start(model, layout, config, schema, data, args.warm_start)
        logging.info("warm start from %s: %d weights copied, %d embedding rows copied, %d fresh", args.warm_start,
                     warm["copied_weights"], warm["copied_rows"], warm["fresh_rows"])
    out = args.output.rstrip("/")
    throughput = Throughput(args.batch_size)
    callbacks = make_callbacks(out, patience=args.patience, resume=args.resume) + [throughput]
    logging.info("training %s on %s (%d sparse, %d dense features)", config.model, data, len(layout.sparse),
                 len(layout.dense))
    history = model.fit(train_ds, validation_data=eval_ds, epochs=args.epochs,
                        steps_per_epoch=args.steps_per_epoch, callbacks=callbacks,
                        verbose=args.verbose)
    train_seconds = time.time() - t0
    model.save_weights(os.path.join(out, "checkpoints", "final.weights.h5"))  # what --warm-start reads

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
                           extra_info={"model": config.model, "data": data, "eval_auc": metrics["auc"],
                                       "eval_score_profile": score_profile.profile(probs)})
    metrics["model_version"] = info["version"]
    if warm is not None:
        metrics["warm_start"] = warm
    promotion = None
    if args.baseline:
        from ctrflow.model.promotion import gate

        promotion = gate(model, layout, schema, data, eval_ds, args.baseline, args.require_better or 0.0, out,
                         predict_split)
        metrics["promotion"] = {k: promotion[k] for k in ("promote", "auc_delta")}
    with tf.io.gfile.GFile(os.path.join(out, "metrics.json"), "w") as f:
        f.write(json.dumps(metrics, indent=2))
    with tf.io.gfile.GFile(os.path.join(out, "config.json"), "w") as f:
        trainer = {k: v for k, v in vars(args).items() if k in
                   ("data", "batch_size", "epochs", "patience", "steps_per_epoch", "seed", "deterministic",
                    "shuffle_buffer", "pair_window", "cache")}
        f.write(json.dumps({"model": config.to_dict(), "trainer": trainer}, indent=2, default=list))
    logging.info("eval AUC %.4f, log loss %.4f on %d rows; exported %s to %s", metrics["auc"], metrics["logloss"],
                 metrics["eval_rows"], info["version"], export_dir)
    if promotion is not None:
        from ctrflow.model.promotion import NotPromoted

        logging.info("promotion gate: new AUC %.4f vs baseline %.4f -> promote=%s (%s)", promotion["new"]["auc"],
                     promotion["baseline"]["auc"], promotion["promote"], os.path.join(out, "promotion.json"))
        if args.require_better is not None and not promotion["promote"]:
            refused = NotPromoted(f"new model AUC {promotion['new']['auc']:.4f} is below the baseline's "
                                  f"{promotion['baseline']['auc']:.4f} by more than {args.require_better}")
            logging.error("not promoted: %s (exit status %d)", refused, refused.code)
            raise refused
    return metrics


if __name__ == "__main__":
    run()

"""``ctrflow train``: fit a model on the preprocess output and export it for serving.

Outputs under ``--output`` (MODEL_DIR)::

    export/             the serving SavedModel (transform graph + model), see model.export
    checkpoints/        best weights (by validation AUC) and a backup to resume from
    logs/               TensorBoard logs
    metrics.json        eval metrics of the exported (selected) model (exact AUC, log loss, calibration),
                        its validation metrics, the selected epoch and the Platt parameters
    config.json         the model and trainer options used
    promotion.json      with --baseline: both models on the same eval rows, and promote true/false

Model selection is honest by default: early stopping, the best-epoch choice
and Platt calibration use a validation holdout of the *training* records
(``--valid-fraction``, a stable hash of each record), so the eval split only
measures the selected model. ``--valid-fraction 0`` selects on eval, as
earlier versions did: that reported AUC is optimistic.
"""
from __future__ import annotations

import json
import logging
import os
import time

import numpy as np

from ctrflow.common.flags import FlagParser, add_flags, from_namespace
from ctrflow.common.logs import setup_logging
from ctrflow.model.config import ModelConfig
from ctrflow.model.options import TrainerOptions


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


def _train_dataset(opts: TrainerOptions, config: ModelConfig, data: str, spec: dict, layout):
    """Pairs for the pairwise loss, else (downsampled) shuffled examples; never the validation holdout."""
    from ctrflow.model.inputs import make_dataset, make_pair_dataset, split_files

    files, repeat = split_files(data, "train"), opts.steps_per_epoch is not None
    holdout = (opts.valid_fraction, False)
    if config.loss == "pairwise":
        return make_pair_dataset(files, spec, layout, opts.batch_size, seed=opts.seed, repeat=repeat,
                                 cache=opts.cache, pair_window=opts.pair_window, holdout=holdout)
    return make_dataset(files, spec, layout, opts.batch_size, shuffle=True, seed=opts.seed, cache=opts.cache,
                        shuffle_buffer=opts.shuffle_buffer, repeat=repeat,
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


def _member_dir(out: str, k: int) -> str:
    """Member 0 writes where a single model does; member k > 0 under ``members/k``."""
    return out if k == 0 else os.path.join(out, "members", str(k))


def _fit_member(k: int, opts: TrainerOptions, config: ModelConfig, layout, schema, data: str, spec: dict,
                valid_ds, throughput) -> dict:
    """Trains ensemble member ``k`` (seed ``opts.seed + k``) with early stopping and Platt scaling on valid.

    With ``--resume``, a member whose ``checkpoints/final.weights.h5`` exists is
    loaded, not retrained (members k > 0 write it as soon as they finish).
    """
    import dataclasses

    import tensorflow as tf

    from ctrflow.model import metrics as mt
    from ctrflow.model.callbacks import make_callbacks
    from ctrflow.model.models import build_model, compile_model

    seed = opts.seed + k
    _set_seed(seed, opts.deterministic)
    member_dir = _member_dir(opts.output.rstrip("/"), k)
    model = compile_model(build_model(layout, config), config)
    warm = None
    if opts.warm_start:
        from ctrflow.model.warm_start import warm_start

        warm = warm_start(model, layout, config, schema, data, opts.warm_start)
        logging.info("warm start from %s: %d weights copied, %d embedding rows copied, %d fresh", opts.warm_start,
                     warm["copied_weights"], warm["copied_rows"], warm["fresh_rows"])
    final = os.path.join(member_dir, "checkpoints", "final.weights.h5")
    history: dict = {}
    if k > 0 and opts.resume and tf.io.gfile.exists(final):
        logging.info("ensemble member %d: loading the finished %s", k, final)
        model.load_weights(final)
    else:
        plateau = (config.plateau_factor, config.plateau_patience) if config.lr_schedule == "plateau" else None
        callbacks = make_callbacks(member_dir, patience=opts.patience, resume=opts.resume, plateau=plateau)
        logging.info("training %s on %s (%d sparse, %d dense features)%s", config.model, data, len(layout.sparse),
                     len(layout.dense), f", ensemble member {k + 1}/{opts.ensemble} (seed {seed})"
                     if opts.ensemble > 1 else "")
        train_ds = _train_dataset(dataclasses.replace(opts, seed=seed), config, data, spec, layout)
        fit = model.fit(train_ds, validation_data=valid_ds, epochs=opts.epochs, steps_per_epoch=opts.steps_per_epoch,
                        callbacks=callbacks + ([throughput] if k == 0 else []), verbose=opts.verbose)
        history = {name: [float(v) for v in vals] for name, vals in fit.history.items()}
    platt = fit_calibration(model, valid_ds) if opts.valid_fraction > 0 else None
    if k > 0 and history:
        model.save_weights(final)  # with its Platt parameters: what --resume and a promotion gate load
    valid_aucs = history.get("val_auc", [])
    valid_auc = mt.roc_auc(*predict_split(model, valid_ds)) if opts.ensemble > 1 else None
    return {"model": model, "warm": warm, "history": history, "platt": platt, "seed": seed, "valid_auc": valid_auc,
            "selected_epoch": int(np.argmax(valid_aucs)) + 1 if valid_aucs else None}


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
    from ctrflow.model.callbacks import Throughput
    from ctrflow.model.ensemble import SeedEnsemble
    from ctrflow.model.inputs import make_dataset, split_files
    from ctrflow.pipeline import artifacts as af
    from ctrflow.pipeline import score_profile
    from ctrflow.pipeline.artifacts import PreprocessArtifacts
    from ctrflow.pipeline.layout import FeatureLayout
    from ctrflow.schemas import loads_schema

    _set_seed(opts.seed, opts.deterministic)
    t0 = time.time()
    artifacts = PreprocessArtifacts.live(opts.data)  # the published version of a preprocess output
    data = artifacts.dir
    layout = FeatureLayout.from_json(artifacts.layout_text())
    schema_text = artifacts.schema_text()
    schema = loads_schema(schema_text, artifacts.path(af.SCHEMA))
    train_stats = artifacts.stats()
    tft_output = tft.TFTransformOutput(data)
    spec = tft_output.transformed_feature_spec()

    has_eval = bool(tf.io.gfile.glob(split_files(data, "eval")))
    eval_split = "eval" if has_eval else "train"
    if not has_eval:
        logging.warning("no eval split in %s: metrics use the training data", data)
    eval_ds = make_dataset(split_files(data, eval_split), spec, layout, opts.eval_batch_size, shuffle=False,
                           cache=True)
    if opts.valid_fraction > 0:
        valid_ds = make_dataset(split_files(data, "train"), spec, layout, opts.eval_batch_size, shuffle=False,
                                cache=True, holdout=(opts.valid_fraction, True))
    else:
        logging.warning("--valid-fraction 0: early stopping selects on the %s split, so its reported metrics "
                        "are optimistic", eval_split)
        valid_ds = eval_ds

    out = opts.output.rstrip("/")
    throughput = Throughput(opts.batch_size)
    fits = [_fit_member(k, opts, config, layout, schema, data, spec, valid_ds, throughput)
            for k in range(opts.ensemble)]
    train_seconds = time.time() - t0
    first, warm = fits[0]["model"], fits[0]["warm"]
    model = first if opts.ensemble == 1 else SeedEnsemble([f["model"] for f in fits])
    platt = fits[0]["platt"]
    labels, probs = predict_split(model, eval_ds)
    history = fits[0]["history"]
    metrics = {**mt.summary(labels, probs), "split": eval_split,
               "selected_on": "valid" if opts.valid_fraction > 0 else eval_split,
               "valid": mt.summary(*predict_split(model, valid_ds)) if opts.valid_fraction > 0 else None,
               "selected_epoch": fits[0]["selected_epoch"], "platt": platt,
               "epochs_run": len(history.get("loss", [])),
               "train_seconds": round(train_seconds, 2),
               "train_examples_per_second": round(throughput.examples_per_second, 1),
               "history": history}
    if opts.ensemble > 1:
        metrics["members"] = [{"seed": f["seed"], "selected_epoch": f["selected_epoch"], "platt": f["platt"],
                               "valid_auc": f["valid_auc"]} for f in fits]
    export_dir = os.path.join(out, "export")
    if tf.io.gfile.exists(export_dir):
        tf.io.gfile.rmtree(export_dir)
    # the first member's weights: what --warm-start and a promotion gate's baseline load
    first.save_weights(os.path.join(out, "checkpoints", "final.weights.h5"))
    info = exporter.export(model, tft_output, schema, layout, export_dir, schema_text=schema_text,
                           train_stats=train_stats,
                           extra_info={"model": config.model, "data": data, "eval_auc": metrics["auc"],
                                       "eval_score_profile": score_profile.profile(probs)})
    metrics["model_version"] = info["version"]
    if warm is not None:
        metrics["warm_start"] = warm
    promotion = None
    if opts.baseline:
        from ctrflow.model.promotion import gate

        promotion = gate(model, layout, schema, data, eval_ds, opts.baseline, opts.require_better or 0.0, out,
                         predict_split)
        metrics["promotion"] = {k: promotion[k] for k in ("promote", "auc_delta")}
    with tf.io.gfile.GFile(os.path.join(out, "metrics.json"), "w") as f:
        f.write(json.dumps(metrics, indent=2))
    with tf.io.gfile.GFile(os.path.join(out, "config.json"), "w") as f:
        f.write(json.dumps({"model": config.to_dict(), "trainer": opts.to_dict()}, indent=2))
    logging.info("eval AUC %.4f, log loss %.4f on %d rows; exported %s to %s", metrics["auc"], metrics["logloss"],
                 metrics["eval_rows"], info["version"], export_dir)
    if promotion is not None:
        from ctrflow.model.promotion import NotPromoted

        logging.info("promotion gate: new AUC %.4f vs baseline %.4f -> promote=%s (%s)", promotion["new"]["auc"],
                     promotion["baseline"]["auc"], promotion["promote"], os.path.join(out, "promotion.json"))
        if opts.require_better is not None and not promotion["promote"]:
            refused = NotPromoted(f"new model AUC {promotion['new']['auc']:.4f} is below the baseline's "
                                  f"{promotion['baseline']['auc']:.4f} by more than {opts.require_better}")
            logging.error("not promoted: %s (exit status %d)", refused, refused.code)
            raise refused
    return metrics


if __name__ == "__main__":
    run()

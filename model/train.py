"""``ctrflow train``: fit a model on the preprocess output and export it for serving.

Outputs under ``--output`` (MODEL_DIR)::

    export/             the serving SavedModel (transform graph + model), see model.export
    checkpoints/        best weights (by validation AUC) and a backup to resume from
    logs/               TensorBoard logs
    metrics.json        eval metrics of the exported (selected) model (exact AUC, log loss, calibration),
                        its validation metrics, the selected epoch and the Platt parameters
    config.json         the model and trainer options used
    promotion.json      with --baseline: both models on the same eval rows, and promote true/false

With ``--serving-base BASE`` the export is also copied to ``BASE/<N>/`` for TF
Serving and Vertex AI (``model.serving_layout``), unless the gate refused it.

Model selection is honest by default: early stopping, the best-epoch choice
and Platt calibration use a validation holdout of the *training* records
(``--valid-fraction``, a stable hash of each record), so the eval split only
measures the selected model. ``--valid-fraction 0`` selects on eval, as
earlier versions did: that reported AUC is optimistic.

Two layers, in the shape of TFX's ``run_fn(fn_args)``: ``run_fn(TrainInputs)``
only builds, fits, calibrates, evaluates and exports, from inputs already
resolved; ``run_job`` around it resolves them (the live version of ``--data``
through its ``_LATEST``, the schema, layout and statistics stored there), then
runs the promotion gate and writes the JSON reports.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Any

import numpy as np

from ctrflow.common import compat
from ctrflow.common.flags import FlagParser, add_flags, from_namespace
from ctrflow.common.logs import setup_logging
from ctrflow.model import metrics as mt
from ctrflow.model.config import ModelConfig
from ctrflow.model.distribute import ONE_DEVICE, Placement, prepare_model
from ctrflow.model.options import TrainerOptions
from ctrflow.model.slices import parse_columns as slice_columns
from ctrflow.pipeline import artifacts as af
from ctrflow.pipeline import score_profile
from ctrflow.pipeline.layout import FeatureLayout
from ctrflow.schemas import Schema, loads_schema


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


@dataclasses.dataclass(frozen=True)
class TrainInputs:
    """One training run's inputs, already resolved: what ``run_fn`` takes (TFX's ``FnArgs``).

    ``data_dir`` is a preprocess output's version folder itself (``_LATEST``
    already followed) and ``output_dir`` the MODEL_DIR to write. ``trainer``
    gives the fit's settings (epochs, batches, seeds, ensemble, validation
    holdout, resume, cache); ``run_fn`` reads none of its paths (``data``,
    ``output``, ``warm_start``, ``baseline``): those are resolved into the
    fields here or belong to the job layer.
    """

    data_dir: str
    output_dir: str
    schema: Schema
    schema_text: str  # exported as is, beside the graph
    layout: FeatureLayout
    train_stats: dict | None  # the training profile: the export's drift baseline
    config: ModelConfig
    trainer: TrainerOptions
    warm_start_from: str | None = None  # a previous MODEL_DIR whose weights seed the model
    placement: Placement = ONE_DEVICE  # the tf.distribute strategy (model.distribute), resolved before any op

    @property
    def model_dir(self) -> af.ModelDirArtifacts:
        return af.ModelDirArtifacts(self.output_dir)


@dataclasses.dataclass
class MemberFit:
    """One trained ensemble member (the only one without ``--ensemble``)."""

    model: Any
    seed: int
    history: dict[str, list[float]]  # Keras' per-epoch logs; empty when --resume loaded a finished member
    platt: dict | None  # Platt parameters fitted on the validation holdout
    selected_epoch: int | None  # the best epoch by validation AUC (restored by early stopping)
    valid_auc: float | None  # the member's own validation AUC (ensembles only)
    warm: dict | None  # the warm-start report


@dataclasses.dataclass
class TrainResult:
    """What ``run_fn`` produced: the exported model, its metrics, and what the promotion gate needs."""

    metrics: dict[str, Any]  # eval (and validation) metrics, model selection, calibration, history, speed
    export_dir: str
    model_version: str
    model: Any  # the exported model: one member or their ``SeedEnsemble``
    eval_data: Any  # the eval dataset the metrics come from (the gate scores the baseline on the same rows)
    warm_start: dict | None


def _set_seed(seed: int, deterministic: bool) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def _train_dataset(opts: TrainerOptions, config: ModelConfig, data: str, spec: dict, layout,
                   placement: Placement = ONE_DEVICE):
    """Pairs for the pairwise loss, else (downsampled) shuffled examples; never the validation holdout.

    Global batches of ``--batch-size``; under a strategy, cut over the
    replicas and sharded over the workers (``distribute.distributed_dataset``).
    """
    import tensorflow as tf

    from ctrflow.model.distribute import distributed_dataset

    dataset = _global_train_dataset(opts, config, data, spec, layout)
    if placement.strategy is None:
        return dataset
    from ctrflow.model.inputs import split_files

    return distributed_dataset(placement, dataset, global_batch=opts.batch_size,
                               num_files=len(tf.io.gfile.glob(split_files(data, "train"))))


def _global_train_dataset(opts: TrainerOptions, config: ModelConfig, data: str, spec: dict, layout):
    from ctrflow.model.inputs import make_dataset, make_pair_dataset, split_files
    from ctrflow.model.validation import train_holdout

    files, repeat = split_files(data, "train"), opts.steps_per_epoch is not None
    holdout = train_holdout(data, opts.valid_fraction)
    if config.loss == "pairwise":
        return make_pair_dataset(files, spec, layout, opts.batch_size, seed=opts.seed, repeat=repeat,
                                 cache=opts.cache, pair_window=opts.pair_window, holdout=holdout)
    return make_dataset(files, spec, layout, opts.batch_size, shuffle=True, seed=opts.seed, cache=opts.cache,
                        shuffle_buffer=opts.shuffle_buffer, repeat=repeat,
                        negative_keep_rate=config.negative_keep_rate, positive_weight=config.positive_weight,
                        holdout=holdout)


def _eval_and_valid_datasets(inputs: TrainInputs, spec: dict):
    """(eval dataset, validation dataset, eval split name): the ``valid`` split or else the validation holdout of
    the training records (``model.validation``), or the eval split itself with ``--valid-fraction 0``; the
    training split when there is no eval split."""
    import tensorflow as tf

    from ctrflow.model.inputs import make_dataset, split_files
    from ctrflow.model.validation import valid_rows

    opts, data, layout = inputs.trainer, inputs.data_dir, inputs.layout
    has_eval = bool(tf.io.gfile.glob(split_files(data, "eval")))
    eval_split = "eval" if has_eval else "train"
    if not has_eval:
        logging.warning("no eval split in %s: metrics use the training data", data)
    eval_ds = make_dataset(split_files(data, eval_split), spec, layout, opts.eval_batch_size, shuffle=False,
                           cache=True)
    if opts.valid_fraction > 0:
        valid_split, holdout = valid_rows(data, opts.valid_fraction)
        logging.info("validation rows: %s", f"the {valid_split} split" if holdout is None else
                     f"{holdout[0]:.0%} of the {valid_split} split by hash")
        valid_ds = make_dataset(split_files(data, valid_split), spec, layout, opts.eval_batch_size, shuffle=False,
                                cache=True, holdout=holdout)
    else:
        logging.warning("--valid-fraction 0: early stopping selects on the %s split, so its reported metrics "
                        "are optimistic", eval_split)
        valid_ds = eval_ds
    return eval_ds, valid_ds, eval_split


def predict_split(model, dataset) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) over a dataset of (features, label[, weight]) (``inputs.split_weights``: weights)."""
    import tensorflow as tf

    # one trace for every batch size (a concrete function): TensorFlow counts the traces of this code across all
    # the models of a run, and a short last batch traced it again; it warned about "retracing" four times
    predict = tf.function(lambda x: model.probabilities(x)).get_concrete_function(dataset.element_spec[0])
    labels, probs = [], []
    for x, y, *_ in dataset:
        labels.append(y.numpy().reshape(-1))
        probs.append(predict(x).numpy().reshape(-1))
    if not labels:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(labels), np.concatenate(probs)


def fit_calibration(model, valid_ds) -> dict | None:
    """Platt-scales ``model`` on the validation holdout (``config.calibration == 'platt'``); returns (a, b)."""
    import tensorflow as tf

    from ctrflow.model.calibration import fit_platt
    from ctrflow.model.inputs import split_weights

    if model.model_config.calibration != "platt":
        return None
    log_odds = tf.function(lambda x: model.log_odds(x)).get_concrete_function(valid_ds.element_spec[0])  # as above
    z, y = [], []
    for x, labels, *_ in valid_ds:
        z.append(log_odds(x).numpy().reshape(-1))
        y.append(labels.numpy().reshape(-1))
    a, b = fit_platt(np.concatenate(z), np.concatenate(y), weights=split_weights(valid_ds))  # weighted: role weight
    model.platt.assign([a, b])
    return {"scale": a, "bias": b}


def fit_member(k: int, inputs: TrainInputs, spec: dict, valid_ds, throughput) -> MemberFit:
    """Builds, (warm-starts,) fits and calibrates ensemble member ``k`` (seed ``seed + k``).

    Early stopping and Platt scaling use ``valid_ds``. With ``--resume``, a
    member k > 0 whose final weights exist is loaded, not retrained (members
    k > 0 write them as soon as they finish).

    Under a strategy (``inputs.placement``) the model and its optimisers are
    built in its scope; every worker scores the whole of ``valid_ds`` itself
    (``HoldoutValidation``), so early stopping, the best epoch and Platt
    scaling decide the same everywhere; with several workers the resume
    backup is always on, so a worker restarted with the same TF_CONFIG
    resumes from the last finished epoch.
    """
    import tensorflow as tf

    from ctrflow.model.callbacks import make_callbacks, one_pass_epochs
    from ctrflow.model.inputs import split_weights
    from ctrflow.model.models import build_model, compile_model

    opts, config, layout, data = inputs.trainer, inputs.config, inputs.layout, inputs.data_dir
    seed = opts.seed + k
    _set_seed(seed, opts.deterministic)
    member_dir = inputs.model_dir.member_dir(k)
    placement = inputs.placement
    with placement.scope():  # variables (model, optimiser slots, metrics) mirrored over the replicas
        model = compile_model(build_model(layout, config), config)
    prepare_model(model, placement)
    warm = None
    if inputs.warm_start_from:
        from ctrflow.model.warm_start import warm_start

        with placement.scope():
            warm = warm_start(model, layout, config, inputs.schema, data, inputs.warm_start_from)
        logging.info("warm start from %s: %d weights copied, %d embedding rows copied, %d fresh",
                     inputs.warm_start_from, warm["copied_weights"], warm["copied_rows"], warm["fresh_rows"])
    final = inputs.model_dir.checkpoint(af.FINAL_WEIGHTS, member=k)
    history: dict = {}
    if k > 0 and opts.resume and tf.io.gfile.exists(final):
        logging.info("ensemble member %d: loading the finished %s", k, final)
        model.load_weights(final)
    else:
        plateau = (config.plateau_factor, config.plateau_patience) if config.lr_schedule == "plateau" else None
        callbacks = make_callbacks(member_dir, patience=opts.patience, resume=opts.resume or placement.workers > 1,
                                   plateau=plateau)
        validation = valid_ds
        if placement.strategy is not None:  # the whole holdout on every worker, before the callbacks that read it
            from ctrflow.model.callbacks import HoldoutValidation

            callbacks, validation = [HoldoutValidation(valid_ds, config.auc_num_thresholds), *callbacks], None
        logging.info("training %s on %s (%d sparse, %d dense features)%s", config.model, data, len(layout.sparse),
                     len(layout.dense), f", ensemble member {k + 1}/{opts.ensemble} (seed {seed})"
                     if opts.ensemble > 1 else "")
        train_ds = _train_dataset(dataclasses.replace(opts, seed=seed), config, data, spec, layout, placement)
        with one_pass_epochs():  # shuffle=False: the dataset shuffles itself (Keras warns it ignores True)
            fit = model.fit(train_ds, validation_data=validation, epochs=opts.epochs, shuffle=False,
                            steps_per_epoch=opts.steps_per_epoch,
                            callbacks=callbacks + ([throughput] if k == 0 else []), verbose=opts.verbose)
        history = {name: [float(v) for v in vals] for name, vals in fit.history.items()}
    platt = fit_calibration(model, valid_ds) if opts.valid_fraction > 0 else None
    if k > 0 and history:
        model.save_weights(final)  # with its Platt parameters: what --resume and a promotion gate load
    valid_aucs = history.get("val_auc", [])
    return MemberFit(model=model, seed=seed, history=history, platt=platt,
                     selected_epoch=int(np.argmax(valid_aucs)) + 1 if valid_aucs else None,
                     valid_auc=mt.roc_auc(*predict_split(model, valid_ds), split_weights(valid_ds))
                     if opts.ensemble > 1 else None,
                     warm=warm)


def run_fn(inputs: TrainInputs) -> TrainResult:
    """Builds, fits and calibrates the model (every ensemble member), evaluates it and exports it for serving.

    Writes only the model's own files under ``inputs.output_dir``: checkpoints,
    TensorBoard logs and ``export/`` (replaced). No report: ``run_job``'s.
    """
    import tensorflow as tf
    import tensorflow_transform as tft

    from ctrflow.model import export as exporter
    from ctrflow.model.callbacks import Throughput
    from ctrflow.model.ensemble import SeedEnsemble
    from ctrflow.model.inputs import split_weights

    opts, out = inputs.trainer, inputs.model_dir
    _set_seed(opts.seed, opts.deterministic)
    t0 = time.time()
    tft_output = tft.TFTransformOutput(inputs.data_dir)
    spec = tft_output.transformed_feature_spec()
    eval_ds, valid_ds, eval_split = _eval_and_valid_datasets(inputs, spec)

    throughput = Throughput(opts.batch_size)
    fits = [fit_member(k, inputs, spec, valid_ds, throughput) for k in range(opts.ensemble)]
    train_seconds = time.time() - t0
    first = fits[0]
    model = first.model if opts.ensemble == 1 else SeedEnsemble([f.model for f in fits])
    labels, probs = predict_split(model, eval_ds)
    metrics = {**mt.summary(labels, probs, split_weights(eval_ds)), "split": eval_split,  # weighted: role weight
               "selected_on": "valid" if opts.valid_fraction > 0 else eval_split,
               "valid": mt.summary(*predict_split(model, valid_ds), split_weights(valid_ds))
               if opts.valid_fraction > 0 else None,
               "selected_epoch": first.selected_epoch, "platt": first.platt,
               "epochs_run": len(first.history.get("loss", [])),
               "train_seconds": round(train_seconds, 2),
               "train_examples_per_second": round(throughput.examples_per_second, 1),
               "history": first.history, "distribute": inputs.placement.describe(opts.batch_size)}
    if opts.ensemble > 1:
        metrics["members"] = [{"seed": f.seed, "selected_epoch": f.selected_epoch, "platt": f.platt,
                               "valid_auc": f.valid_auc} for f in fits]
    if tf.io.gfile.exists(out.export_dir):
        tf.io.gfile.rmtree(out.export_dir)
    # the first member's weights: what --warm-start and a promotion gate's baseline load
    first.model.save_weights(out.checkpoint(af.FINAL_WEIGHTS))
    info = exporter.export(model, tft_output, inputs.schema, inputs.layout, out.export_dir,
                           schema_text=inputs.schema_text, train_stats=inputs.train_stats,
                           extra_info={"model": inputs.config.model, "data": inputs.data_dir,
                                       "eval_auc": metrics["auc"], "eval_score_profile": score_profile.profile(probs)})
    return TrainResult(metrics=metrics, export_dir=out.export_dir, model_version=info["version"], model=model,
                       eval_data=eval_ds, warm_start=first.warm)


def resolve_inputs(opts: TrainerOptions, config: ModelConfig) -> TrainInputs:
    """The job layer's resolution: the published version of ``--data`` (its ``_LATEST``) and what it stores."""
    artifacts = af.PreprocessArtifacts.live(opts.data)
    schema_text = artifacts.schema_text()
    return TrainInputs(data_dir=artifacts.dir, output_dir=opts.output.rstrip("/"),
                       schema=loads_schema(schema_text, artifacts.path(af.SCHEMA)), schema_text=schema_text,
                       layout=FeatureLayout.from_json(artifacts.layout_text()), train_stats=artifacts.stats(),
                       config=config, trainer=opts, warm_start_from=opts.warm_start)


def run(argv: list[str] | None = None) -> dict:
    """Parses the flags, trains, evaluates and exports; returns the metrics."""
    opts, config = parse_options(argv)
    setup_logging()
    return run_job(opts, config)


def run_job(opts: TrainerOptions, config: ModelConfig) -> dict:
    """Resolves the inputs, trains (``run_fn``), runs the promotion gate and writes the reports.

    Returns the metrics, also written to MODEL_DIR/metrics.json (with the
    options in config.json). With ``--require-better``, a model the gate
    refuses raises ``NotPromoted`` after everything is written.

    The tf.distribute placement is resolved first, before TensorFlow runs
    any op (``MultiWorkerMirroredStrategy`` configures the runtime at
    creation). With several workers every worker runs the same job (saving
    runs collectives), but only the chief's files stay in MODEL_DIR: the
    others write to a temporary folder, removed when they succeed
    (``distribute.worker_output``); only the chief runs the promotion gate
    and publishes to ``--serving-base``.
    """
    from ctrflow.model.distribute import resolve_placement, worker_output

    placement = resolve_placement(opts.distribute)
    logging.info("placement: %s", json.dumps(placement.describe(opts.batch_size)))
    with worker_output(opts.output.rstrip("/"), placement) as output_dir:
        return _run_job(opts, config, placement, output_dir)


def _run_job(opts: TrainerOptions, config: ModelConfig, placement: Placement, output_dir: str) -> dict:
    import tensorflow as tf

    inputs = dataclasses.replace(resolve_inputs(opts, config), output_dir=output_dir, placement=placement)
    if opts.max_slice_auc_drop is not None:  # before training: a slice column the eval split cannot give back
        from ctrflow.model.slice_features import check_columns

        check_columns(inputs.schema, inputs.layout, slice_columns(opts.slice_by))
    result = run_fn(inputs)
    out = inputs.model_dir
    metrics = {**result.metrics, "model_version": result.model_version}
    if result.warm_start is not None:
        metrics["warm_start"] = result.warm_start
    promotion = None
    if opts.baseline and placement.is_chief:
        from ctrflow.model.promotion import gate

        promotion = gate(result.model, inputs.layout, inputs.schema, inputs.data_dir, result.eval_data, opts.baseline,
                         opts.require_better or 0.0, inputs.output_dir, predict_split,
                         slice_by=slice_columns(opts.slice_by), max_slice_auc_drop=opts.max_slice_auc_drop,
                         min_slice_rows=opts.min_slice_rows)
        metrics["promotion"] = {k: promotion[k] for k in ("promote", "auc_delta", "decided_by_slices")
                                if k in promotion}
    with tf.io.gfile.GFile(out.path(af.METRICS), "w") as f:
        f.write(json.dumps(metrics, indent=2))
    with tf.io.gfile.GFile(out.path(af.CONFIG), "w") as f:
        f.write(json.dumps({"model": config.to_dict(), "trainer": opts.to_dict(), "compat": compat.manifest(),
                            "distribute": placement.describe(opts.batch_size)}, indent=2))
    logging.info("eval AUC %.4f, log loss %.4f on %d rows; exported %s to %s", metrics["auc"], metrics["logloss"],
                 metrics["eval_rows"], result.model_version, result.export_dir)
    if promotion is not None:
        _enforce_gate(promotion, opts.require_better, out.path(af.PROMOTION),
                      enforce=opts.max_slice_auc_drop is not None)
    if opts.serving_base and placement.is_chief and (promotion is None or promotion["promote"]):
        from ctrflow.model.serving_layout import publish_version

        metrics["serving_version_dir"] = publish_version(result.export_dir, opts.serving_base)
    return metrics


def _enforce_gate(promotion: dict, require_better: float | None, report: str, enforce: bool = False) -> None:
    """Logs the gate's decision; raises ``NotPromoted`` (its exit status) when ``--require-better`` refuses it,
    or a slice does under ``--max-slice-auc-drop`` (``enforce``)."""
    from ctrflow.model.promotion import NotPromoted

    logging.info("promotion gate: new AUC %.4f vs baseline %.4f -> promote=%s (%s)", promotion["new"]["auc"],
                 promotion["baseline"]["auc"], promotion["promote"], report)
    auc_refused = require_better is not None and not promotion.get("auc_rule_passed", promotion["promote"])
    if (auc_refused or (enforce and bool(promotion.get("decided_by_slices")))) and not promotion["promote"]:
        refused = NotPromoted("; ".join(promotion.get("reasons") or [
            f"new model AUC {promotion['new']['auc']:.4f} is below the baseline's "
            f"{promotion['baseline']['auc']:.4f} by more than {require_better}"]))
        logging.error("not promoted: %s (exit status %d)", refused, refused.code)
        raise refused


if __name__ == "__main__":
    run()

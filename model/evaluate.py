"""``ctrflow evaluate``: exact metrics and plots of an exported model on preprocessed data.

Scores the transformed TFRecords of a ``ctrflow preprocess`` output with the
export's ``score_transformed`` signature, so the numbers are those of the
served model (downsampling correction included) on exactly the features
training used. Writes to ``--output`` (default ``MODEL/evaluation/<split>``)::

    metrics.json      AUC, log loss, calibration (mean prediction / base rate),
                      calibration bins and model version; weighted by the schema's
                      ``role: weight`` column when it has one (``weighted: true``)
    roc.png           ROC curve with the AUC
    calibration.png   observed rate vs mean prediction in equal-count bins
    importance.json   permutation importance: AUC drop per shuffled feature (model.importance)
    importance.png    the same as a bar chart
    index.html        the figures, the plots and, with --slice-by, the slices table (worst slice first)

``--slice-by COL[,COL...]`` adds ``slices`` to metrics.json: per value of each
column (top ``--slice-top`` by rows, the rest as "(other)"), AUC with a 95%
DeLong interval, log loss, calibration and rows; under ``--slice-min-rows``
rows a slice gets no AUC and says so. The eval split holds transformed
features: vocabulary columns come back as their token, bucketized numerics as
their bucket (``model.slice_features``); any other raw column: ``ctrflow
score`` the raw table, then ``ctrflow monitor --slice-by``.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import os

import numpy as np

from ctrflow.common.flags import FlagParser, build_parser, from_namespace
from ctrflow.common.logs import setup_logging
from ctrflow.model import metrics as mt
from ctrflow.model.evaluation_page import write_page
from ctrflow.model.options import EvaluateOptions
from ctrflow.model.slice_features import check_columns, split_slices
from ctrflow.model.slices import parse_columns as slice_columns
from ctrflow.pipeline import artifacts as af


def build_arg_parser() -> FlagParser:
    return build_parser(EvaluateOptions, "ctrflow evaluate", __doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)


def score(model_path: str, file_pattern: str, label: str, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) of every record matching ``file_pattern``."""
    labels, probs, _ = score_weighted(model_path, file_pattern, label, None, batch_size)
    return labels, probs


def score_weighted(model_path: str, file_pattern: str, label: str, weight: str | None,
                   batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(labels, probabilities, sample weights or None without a ``weight`` column) of every record."""
    import tensorflow as tf

    from ctrflow.model import export as exporter

    exported = exporter.load(model_path)
    if "score_transformed" not in exported.loaded.signatures:
        raise ValueError(f"{exported.meta.path} has no score_transformed signature; export it again with "
                         "this version of `ctrflow train`")
    fn = exported.signature("score_transformed")
    files = tf.io.gfile.glob(file_pattern)
    if not files:
        raise FileNotFoundError(f"no TFRecord files match {file_pattern}")
    ds = tf.data.TFRecordDataset(sorted(files), compression_type="GZIP").batch(batch_size).prefetch(2)
    label_spec = {label: tf.io.FixedLenFeature([], tf.float32)}
    if weight is not None:
        label_spec[weight] = tf.io.FixedLenFeature([], tf.float32)
    labels, probs, weights = [], [], []
    for examples in ds:
        parsed = tf.io.parse_example(examples, label_spec)
        labels.append(parsed[label].numpy())
        if weight is not None:
            weights.append(parsed[weight].numpy())
        probs.append(fn(examples=examples)["score"].numpy())
    return np.concatenate(labels), np.concatenate(probs), np.concatenate(weights) if weight is not None else None


def _save_png(fig, path: str) -> None:
    """matplotlib writes local files only: render to memory, write through tf.io.gfile (gs:// too)."""
    import tensorflow as tf

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buf.getvalue())


def plot(labels: np.ndarray, probs: np.ndarray, bins: list[dict], auc: float, out_dir: str) -> list[str]:
    """roc.png and calibration.png in ``out_dir``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fpr, tpr = mt.roc_curve(labels, probs)
    roc_path, cal_path = os.path.join(out_dir, af.ROC_PLOT), os.path.join(out_dir, af.CALIBRATION_PLOT)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, label=f"model (AUC {auc:.4f})")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="random")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend(loc="lower right")
    _save_png(fig, roc_path)
    plt.close(fig)
    pred = [b["mean_prediction"] for b in bins]
    seen = [b["observed_rate"] for b in bins]
    top = max(pred + seen + [1e-6]) * 1.05
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(pred, seen, "o-", label="model")
    ax.plot([0, top], [0, top], "--", color="grey", label="perfect calibration")
    ax.set(xlabel="mean prediction", ylabel="observed positive rate", title="Calibration (equal-count bins)",
           xlim=(0, top), ylim=(0, top))
    ax.legend(loc="upper left")
    _save_png(fig, cal_path)
    plt.close(fig)
    return [roc_path, cal_path]


def run(argv: list[str] | None = None) -> dict:
    """Parses the flags and evaluates; returns the metrics."""
    opts = from_namespace(EvaluateOptions, build_arg_parser().parse_args(argv))
    setup_logging()
    return run_job(opts)


def run_job(opts: EvaluateOptions) -> dict:
    """Evaluates; returns the metrics (also written to OUTPUT/metrics.json)."""
    import tensorflow as tf

    from ctrflow.model.export import load_metadata
    from ctrflow.model.inputs import split_files

    meta = load_metadata(opts.model)
    data = af.PreprocessArtifacts.live(opts.data).dir  # the published version of a preprocess output
    slice_by = slice_columns(opts.slice_by)
    if slice_by:  # before scoring: a column the split cannot give back stops here, with the usable ones
        check_columns(meta.schema, meta.layout, slice_by)
    labels, probs, weights = score_weighted(opts.model, split_files(data, opts.split), meta.layout.label,
                                            meta.layout.weight, opts.batch_size)
    metrics = mt.summary(labels, probs, weights)
    bins = mt.calibration_bins(labels, probs, opts.bins)
    out_dir = opts.output or os.path.join(os.path.dirname(meta.path.rstrip("/")), af.EVALUATION, opts.split)
    tf.io.gfile.makedirs(out_dir)
    plots = plot(labels, probs, bins, metrics["auc"], out_dir)
    metrics.update(model_version=meta.version, data=opts.data, split=opts.split, calibration_bins=bins,
                   plots=plots, options=opts.to_dict())
    if opts.importance_rows > 0:
        from ctrflow.model.importance import evaluate_importance

        model_dir = os.path.dirname(meta.path.rstrip("/"))
        report = evaluate_importance(model_dir, data, opts.split, out_dir, opts.importance_rows)
        metrics["importance"] = {n: v["auc_drop"] for n, v in report["features"].items()}
        plots.append(os.path.join(out_dir, af.IMPORTANCE_PLOT))
    if slice_by:
        metrics["slices"] = split_slices(meta.schema, meta.layout, data, split_files(data, opts.split), slice_by,
                                         labels, probs, opts.slice_top, opts.slice_min_rows, opts.batch_size)
    metrics["page"] = write_page(out_dir, metrics)
    with tf.io.gfile.GFile(os.path.join(out_dir, af.METRICS), "w") as f:
        f.write(json.dumps(metrics, indent=2))
    logging.info("AUC %.4f, log loss %.4f, calibration %.3f on %d rows; wrote %s", metrics["auc"],
                 metrics["logloss"], metrics["calibration"], metrics["eval_rows"], out_dir)
    return metrics

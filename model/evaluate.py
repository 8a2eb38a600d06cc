"""``ctrflow evaluate``: exact metrics and plots of an exported model on preprocessed data.

Scores the transformed TFRecords of a ``ctrflow preprocess`` output with the
export's ``score_transformed`` signature, so the numbers are those of the
served model (downsampling correction included) on exactly the features
training used. Writes to ``--output`` (default ``MODEL/evaluation/<split>``)::

    metrics.json      AUC, log loss, calibration (mean prediction / base rate),
                      calibration bins and model version
    roc.png           ROC curve with the AUC
    calibration.png   observed rate vs mean prediction in equal-count bins
    importance.json   permutation importance: AUC drop per shuffled feature (model.importance)
    importance.png    the same as a bar chart
"""
from __future__ import annotations

import argparse
import json
import logging
import os

import numpy as np

from ctrflow.model import metrics as mt


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ctrflow evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model directory of `ctrflow train` (or its export/)")
    p.add_argument("--data", required=True, help="output directory of `ctrflow preprocess`")
    p.add_argument("--split", default="eval", choices=("eval", "train"), help="split to evaluate (default: eval)")
    p.add_argument("--output", help="where metrics.json and the plots go (default: MODEL/evaluation/SPLIT)")
    p.add_argument("--batch-size", type=int, default=8192, help="examples per scoring call (default: 8192)")
    p.add_argument("--bins", type=int, default=20, help="calibration bins (default: 20)")
    p.add_argument("--importance-rows", type=int, default=20000,
                   help="eval rows for permutation importance (importance.json/.png); 0 skips it (default: 20000)")
    return p


def score(model_path: str, file_pattern: str, label: str, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) of every record matching ``file_pattern``."""
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
    labels, probs = [], []
    for examples in ds:
        labels.append(tf.io.parse_example(examples, label_spec)[label].numpy())
        probs.append(fn(examples=examples)["score"].numpy())
    return np.concatenate(labels), np.concatenate(probs)


def plot(labels: np.ndarray, probs: np.ndarray, bins: list[dict], auc: float, out_dir: str) -> list[str]:
    """roc.png and calibration.png in ``out_dir``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fpr, tpr = mt.roc_curve(labels, probs)
    roc_path, cal_path = os.path.join(out_dir, "roc.png"), os.path.join(out_dir, "calibration.png")
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, label=f"model (AUC {auc:.4f})")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="random")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend(loc="lower right")
    fig.savefig(roc_path, dpi=100, bbox_inches="tight")
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
    fig.savefig(cal_path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return [roc_path, cal_path]


def run(argv: list[str] | None = None) -> dict:
    """Evaluates; returns the metrics (also written to OUTPUT/metrics.json)."""
    args = build_arg_parser().parse_args(argv)
    from ctrflow.beam_jobs.options import setup_logging

    from ctrflow.model.export import load_metadata
    from ctrflow.model.inputs import split_files

    setup_logging()
    meta = load_metadata(args.model)
    labels, probs = score(args.model, split_files(args.data, args.split), meta.layout.label, args.batch_size)
    metrics = mt.summary(labels, probs)
    bins = mt.calibration_bins(labels, probs, args.bins)
    out_dir = args.output or os.path.join(os.path.dirname(meta.path.rstrip("/")), "evaluation", args.split)
    os.makedirs(out_dir, exist_ok=True)
    plots = plot(labels, probs, bins, metrics["auc"], out_dir)
    metrics.update(model_version=meta.version, data=args.data, split=args.split, calibration_bins=bins,
                   plots=plots)
    if args.importance_rows > 0:
        from ctrflow.model.importance import evaluate_importance

        model_dir = os.path.dirname(meta.path.rstrip("/"))
        report = evaluate_importance(model_dir, args.data, args.split, out_dir, args.importance_rows)
        metrics["importance"] = {n: v["auc_drop"] for n, v in report["features"].items()}
        plots.append(os.path.join(out_dir, "importance.png"))
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    logging.info("AUC %.4f, log loss %.4f, calibration %.3f on %d rows; wrote %s", metrics["auc"],
                 metrics["logloss"], metrics["calibration"], metrics["eval_rows"], out_dir)
    return metrics

"""evaluate's page: the headline figures, the plots and the slices table (worst slice first) in one HTML file.

Plain HTML beside the PNGs it shows (no JavaScript, no network), written
through tf.io.gfile so it may live on gs:// like the rest of the output.
"""
from __future__ import annotations

import html
import os

from ctrflow.pipeline import artifacts as af
from ctrflow.pipeline.slice_report import slices_html


def write_page(out_dir: str, metrics: dict) -> str:
    """Writes OUT_DIR/index.html; returns its path."""
    import tensorflow as tf

    figures = ", ".join(f"{k} {metrics[k]:.4f}" for k in ("auc", "logloss", "calibration")
                        if isinstance(metrics.get(k), float))
    parts = ["<html><head><meta charset='utf-8'><title>ctrflow evaluate</title></head><body>",
             f"<h1>ctrflow evaluate: {html.escape(str(metrics.get('split')))} split, model "
             f"{html.escape(str(metrics.get('model_version')))}</h1>",
             f"<p>{html.escape(figures)} on {metrics.get('eval_rows')} rows</p>"]
    parts += [f"<img src='{html.escape(os.path.basename(p))}' alt=''>" for p in metrics.get("plots", [])]
    parts.append(slices_html(metrics.get("slices")))
    parts.append("</body></html>")
    page = os.path.join(out_dir, af.EVALUATION_HTML)
    with tf.io.gfile.GFile(page, "w") as f:
        f.write("\n".join(parts))
    return page

"""Permutation feature importance: the AUC lost when one feature's values are shuffled across rows.

Why permutation and not weights: embedding norms say how large a field's
vectors are, not how much the model's ranking depends on them. Shuffling one
feature's column (its ids, or its scaled value) across the eval rows keeps its
distribution and breaks only its link to the row; the AUC drop is what the
model loses without it. Each feature is shuffled ``repeats`` times with a
fixed seed; the report holds the mean drop and its spread.

It scores with the trained Keras model (MODEL_DIR/checkpoints) on the
transformed eval features, i.e. exactly what ``score_transformed`` serves.
"""
from __future__ import annotations

import io
import json
import os

import numpy as np

from ctrflow.model import metrics as mt
from ctrflow.pipeline import artifacts as af
from ctrflow.pipeline.layout import FeatureLayout


def feature_columns(layout: FeatureLayout) -> list[tuple[str, list[str], int | None]]:
    """(name shown, input tensors shuffled together, column in a [batch, fields] tensor or None)."""
    out = [(f.name, [f.name] + ([f.position] if f.position else []), None) for f in layout.sparse]
    out += [(f.name, [f.name], None) for f in layout.dense]
    gi = layout.global_index
    if gi is not None:
        names = gi.fields or tuple(f"field{j}" for j in range(gi.num_fields))
        out += [(n, [gi.index_key, gi.value_key], j) for j, n in enumerate(names)]
    return out


def permutation_importance(predict, features: dict[str, np.ndarray], labels: np.ndarray, layout: FeatureLayout,
                           repeats: int = 2, seed: int = 0) -> dict:
    """``predict(features) -> probabilities``; returns {base_auc, features: {name: {auc_drop, std}}}."""
    base = mt.roc_auc(labels, predict(features))
    rng = np.random.default_rng(seed)
    result = {}
    for name, keys, column in feature_columns(layout):
        drops = []
        for _ in range(repeats):
            perm = rng.permutation(len(labels))
            shuffled = dict(features)
            for k in keys:
                x = features[k].copy()
                if column is None:
                    x = x[perm]
                else:
                    x[:, column] = x[perm, column]
                shuffled[k] = x
            drops.append(base - mt.roc_auc(labels, predict(shuffled)))
        result[name] = {"auc_drop": float(np.mean(drops)), "std": float(np.std(drops))}
    ordered = dict(sorted(result.items(), key=lambda kv: -kv[1]["auc_drop"]))
    return {"base_auc": float(base), "rows": len(labels), "repeats": repeats, "features": ordered}


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["features"])[::-1]
    drops = [report["features"][n]["auc_drop"] for n in names]
    errs = [report["features"][n]["std"] for n in names]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(names) + 1.2))
    ax.barh(names, drops, xerr=errs, color="tab:blue")
    ax.set(xlabel="AUC drop when shuffled", title=f"Permutation importance (base AUC {report['base_auc']:.4f})")
    ax.axvline(0, color="grey", linewidth=1)
    buf = io.BytesIO()  # matplotlib writes local files only: through tf.io.gfile for gs:// too
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buf.getvalue())


def evaluate_importance(model_dir: str, data: str, split: str, out_dir: str, rows: int, repeats: int = 2) -> dict:
    """Loads the Keras model of MODEL_DIR, reads up to ``rows`` eval rows, writes importance.json/.png."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from ctrflow.model.ensemble import SeedEnsemble
    from ctrflow.model.inputs import make_dataset, split_files
    from ctrflow.model.models import build_model
    from ctrflow.model.warm_start import member_weight_files, previous_config

    with tf.io.gfile.GFile(os.path.join(data, af.LAYOUT)) as f:
        layout = FeatureLayout.from_json(f.read())
    members = []
    for path in member_weight_files(model_dir):  # the model as its export serves it (an --ensemble mean)
        members.append(build_model(layout, previous_config(model_dir)))
        members[-1].load_weights(path)
    model = members[0] if len(members) == 1 else SeedEnsemble(members)
    spec = tft.TFTransformOutput(data).transformed_feature_spec()
    x, y, *_ = next(iter(make_dataset(split_files(data, split), spec, layout, rows, shuffle=False)))  # first rows
    features = {k: v.numpy() for k, v in x.items()}
    predict_fn = tf.function(lambda f: model.probabilities(f))

    def predict(f):
        return predict_fn({k: tf.constant(v) for k, v in f.items()}).numpy().reshape(-1)

    report = permutation_importance(predict, features, y.numpy().reshape(-1), layout, repeats)
    tf.io.gfile.makedirs(out_dir)
    with tf.io.gfile.GFile(os.path.join(out_dir, af.IMPORTANCE), "w") as f:
        f.write(json.dumps(report, indent=2))
    plot(report, os.path.join(out_dir, af.IMPORTANCE_PLOT))
    return report

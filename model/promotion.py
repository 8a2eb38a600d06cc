"""``train --baseline MODEL_DIR [--require-better TOL]``: the promotion gate.

The new model and the baseline are scored on the SAME rows: the new data's
eval split. The baseline sees them as its own transform graph would: every
vocabulary id is mapped by token into the baseline's vocabulary, and a token
the baseline never saw gets the OOV bucket its lookup would have given it
(``pipeline.vocab_lookup.oov_buckets``, the lookup's own: TFT's hash); bucket, hash and
cross ids are the same ids (``preprocess --base`` keeps the boundaries).
``promotion.json`` holds both models' AUC, log loss and calibration, and
``promote`` is true unless the new AUC is below the baseline's by more than
the tolerance (``--require-better TOL``, default 0), or, with
``--slice-by COLS --max-slice-auc-drop D``, the new AUC on a slice of at
least ``--min-slice-rows`` rows is below the baseline's by more than D
(``model.slice_gate``; ``decided_by_slices`` names them). With
``--require-better`` or ``--max-slice-auc-drop`` a refused promotion exits
with status ``EXIT_NOT_PROMOTED``.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import tensorflow as tf

from ctrflow.common.errors import CheckFailed, ExitCode, UserError
from ctrflow.model import metrics as mt
from ctrflow.model.config import ModelConfig
from ctrflow.pipeline import artifacts as af
from ctrflow.pipeline.layout import FeatureLayout
from ctrflow.pipeline.transform import vocab_name
from ctrflow.pipeline.vocab_lookup import oov_buckets
from ctrflow.schemas.types import Schema

EXIT_NOT_PROMOTED = ExitCode.NOT_PROMOTED


class NotPromoted(CheckFailed):
    """The new model is worse than the baseline by more than --require-better."""

    exit_code = EXIT_NOT_PROMOTED


def id_maps(schema: Schema, old: FeatureLayout, new: FeatureLayout, vocab_of) -> dict[str, np.ndarray]:
    """Per vocabulary feature: new id -> the baseline's id for the same token (its OOV bucket when unseen)."""
    maps = {}
    old_fields = {f.name: f for f in old.sparse}
    for c in schema.categorical:
        if c.categorical.vocabulary is None or c.name not in old_fields:
            continue
        name = vocab_name(c.name)
        old_tokens, new_tokens = vocab_of("old", name), vocab_of("new", name)
        n_oov_old = old_fields[c.name].num_ids - len(old_tokens)
        n_oov_new = next(f for f in new.sparse if f.name == c.name).num_ids - len(new_tokens)
        index = {t: i for i, t in enumerate(old_tokens)}
        mapped = np.empty(len(new_tokens) + n_oov_new, np.int64)
        unseen = [i for i, t in enumerate(new_tokens) if t not in index]
        for i, t in enumerate(new_tokens):
            mapped[i] = index.get(t, -1)
        if unseen:
            if n_oov_old == 0:
                raise UserError(f"--baseline: {c.name} has new tokens and the baseline has no OOV bucket for them")
            buckets = oov_buckets(tf.constant([new_tokens[i] for i in unseen]), n_oov_old).numpy()
            mapped[unseen] = len(old_tokens) + buckets
        # the new OOV buckets hash the same way when both have the same number of them
        oov = np.arange(n_oov_new)
        mapped[len(new_tokens):] = len(old_tokens) + (oov if n_oov_new == n_oov_old else oov % max(n_oov_old, 1))
        maps[c.name] = mapped
    return maps


def remap(features: dict, maps: dict[str, np.ndarray]) -> dict:
    out = dict(features)
    for name, table in maps.items():
        ids = features[name]
        lookup = tf.constant(table)
        out[name] = tf.where(ids >= 0, tf.gather(lookup, tf.maximum(ids, 0)), ids)
    return out


def summarize(labels: np.ndarray, probs: np.ndarray) -> dict:
    s = mt.summary(labels, probs)
    return {k: s[k] for k in ("auc", "logloss", "calibration", "eval_rows") if k in s}


def decide(new: dict, baseline: dict, tolerance: float, slices: dict | None = None) -> dict:
    """``promote`` unless the new AUC is lower than the baseline's by more than ``tolerance``, or (with
    ``slices``, ``model.slice_gate.compare_slices``) a checked slice lost more than its ``max_auc_drop``."""
    delta = new["auc"] - baseline["auc"]
    doc = {"new": new, "baseline": baseline, "auc_delta": round(delta, 6), "tolerance": tolerance,
           "promote": bool(delta >= -tolerance), "auc_rule_passed": bool(delta >= -tolerance)}
    reasons = [] if doc["promote"] else [f"AUC {new['auc']:.4f} is below the baseline's {baseline['auc']:.4f} by "
                                         f"more than {tolerance}"]
    if slices is not None:
        doc["slices"] = slices
        doc["decided_by_slices"] = [f"{e['column']}={e['value']}" for e in slices["failed"]]
        reasons += [f"slice {e['column']}={e['value']} ({e['rows']} rows): AUC {e['new_auc']:.4f} vs "
                    f"{e['baseline_auc']:.4f}, a drop over {slices['max_auc_drop']}" for e in slices["failed"]]
        doc["promote"] = doc["promote"] and not slices["failed"]
    doc["reasons"] = reasons
    return doc


def gate(model, layout: FeatureLayout, schema: Schema, data_dir: str, eval_ds, baseline_dir: str,
         tolerance: float, output: str, predict, slice_by: list[str] = (), max_slice_auc_drop: float | None = None,
         min_slice_rows: int | None = None) -> dict:
    """Scores both models on the eval split, writes promotion.json, returns it.

    With ``max_slice_auc_drop`` each ``slice_by`` column's slices are compared too (``model.slice_gate``).
    """
    from ctrflow.model.ensemble import SeedEnsemble
    from ctrflow.model.export import load_metadata
    from ctrflow.model.models import build_model
    from ctrflow.model.warm_start import check_compatible, member_weight_files, model_vocabulary, previous_config
    from ctrflow.pipeline.vocab_extend import read_vocabulary

    baseline_dir = baseline_dir.rstrip("/")
    old_cfg, meta = previous_config(baseline_dir), load_metadata(baseline_dir)
    check_compatible(meta.layout, layout, old_cfg, ModelConfig.from_dict(model.model_config.to_dict()),
                     baseline_dir)
    if layout.global_index is not None:
        raise UserError("--baseline: the global feat_index layout is not supported by the gate yet")
    old_members = []
    for path in member_weight_files(baseline_dir):  # the baseline as its export serves it (an --ensemble mean)
        member = build_model(meta.layout, old_cfg)
        member.load_weights(path)
        old_members.append(member)
    old_model = old_members[0] if len(old_members) == 1 else SeedEnsemble(old_members)
    old_data = [meta.info["data"]] if meta.info.get("data") else []

    def vocab_of(which: str, name: str) -> list[bytes]:
        if which == "new":
            return read_vocabulary(os.path.join(data_dir, af.TRANSFORM_ASSETS, name))
        tokens = model_vocabulary(meta.path, old_data, name)
        if tokens is None:
            raise UserError(f"--baseline {baseline_dir}: vocabulary {name} not found")
        return tokens

    maps = id_maps(schema, meta.layout, layout, vocab_of)
    labels, new_probs = predict(model, eval_ds)
    _, old_probs = predict(old_model, eval_ds.map(lambda x, y, *w: (remap(x, maps), y, *w)))  # *w: sample weights
    slices = None
    if max_slice_auc_drop is not None:
        from ctrflow.model.slice_features import check_columns, decode
        from ctrflow.model.slice_gate import DEFAULT_MIN_ROWS, compare_slices

        check_columns(schema, layout, list(slice_by))
        ids = {c: [] for c in slice_by}
        for x, *_ in eval_ds:  # the same rows in the same order as predict's
            for c in slice_by:
                ids[c].append(x[c].numpy().reshape(-1))
        frame = pd.DataFrame({c: decode(schema, layout, data_dir, c, np.concatenate(v)) for c, v in ids.items()})
        if len(frame) != len(labels):
            raise RuntimeError(f"slice columns have {len(frame)} rows, the predictions {len(labels)}")
        slices = compare_slices(frame, list(slice_by), labels, new_probs, old_probs, max_slice_auc_drop,
                                min_slice_rows or DEFAULT_MIN_ROWS)
    doc = {**decide(summarize(labels, new_probs), summarize(labels, old_probs), tolerance, slices),
           "baseline_dir": baseline_dir, "baseline_version": meta.version, "data": data_dir}
    with tf.io.gfile.GFile(os.path.join(output, af.PROMOTION), "w") as f:
        f.write(json.dumps(doc, indent=2))
    return doc

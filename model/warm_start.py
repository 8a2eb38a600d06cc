"""``train --warm-start MODEL_DIR``: start from a previous model instead of from scratch.

Why: daily retraining from scratch forgets nothing useful only if it sees the
whole history each day. Starting from yesterday's weights, one epoch on the new
day is enough (see BENCHMARKS.md "Daily loop").

- Embedding and linear rows are copied *by token*: a row of the new table gets
  the old row of the same token in the old vocabulary (with ``preprocess --base``
  that is the same id, but the mapping works for any two vocabularies); OOV
  rows map by bucket; bucket, hash and cross fields copy row for row. Tokens new
  today keep their fresh initialisation.
- Every other weight (DNN, heads, FM, dense weights) is copied when its path and
  shape match; the ones that do not are listed in the report.
- A different model family, embedding width, or feature set (id layout) is
  refused with one message: copying rows between them would be meaningless.
"""
from __future__ import annotations

import json
import os
import re

import numpy as np
import tensorflow as tf

from ctrflow.common.errors import UserError
from ctrflow.model.config import ModelConfig
from ctrflow.model.export import load_metadata
from ctrflow.pipeline import artifacts as af
from ctrflow.pipeline.global_index import GLOBAL_VOCAB
from ctrflow.pipeline.layout import FeatureLayout
from ctrflow.pipeline.transform import vocab_name
from ctrflow.pipeline.vocab_extend import read_vocabulary
from ctrflow.schemas.types import Schema

WEIGHT_FILES = (af.FINAL_WEIGHTS, af.BEST_WEIGHTS)


class IncompatibleModelError(UserError, ValueError):
    """The previous model's layout cannot seed the new one."""


def model_vocabulary(export_dir: str, data_dirs: list[str], name: str) -> list[bytes] | None:
    """A vocabulary of a model: its export's assets, else the preprocess output it was trained on."""
    for d in [os.path.join(export_dir, af.SAVED_MODEL_ASSETS)] + [os.path.join(x, af.TRANSFORM_ASSETS)
                                                                  for x in data_dirs]:
        path = os.path.join(d, name)
        if tf.io.gfile.exists(path):
            return read_vocabulary(path)
    return None


def weights_file(model_dir: str) -> str:
    for name in WEIGHT_FILES:
        path = af.ModelDirArtifacts(model_dir).checkpoint(name)
        if tf.io.gfile.exists(path):
            return path
    raise UserError(f"--warm-start {model_dir}: no {af.CHECKPOINTS}/{WEIGHT_FILES[0]}; is it a `ctrflow train` "
                    "MODEL_DIR?")


def member_weight_files(model_dir: str) -> list[str]:
    """Weights of every model the export of ``model_dir`` averages (``--ensemble``; one file for a single model).

    Member 0 is ``checkpoints/final.weights.h5`` (what ``--warm-start`` copies); member k > 0 is
    ``members/k/checkpoints/final.weights.h5``. Each file holds its member's Platt parameters.
    """
    artifacts = af.ModelDirArtifacts(model_dir)
    with tf.io.gfile.GFile(artifacts.path(af.CONFIG)) as f:
        size = int(json.loads(f.read()).get("trainer", {}).get("ensemble", 1))
    files = [weights_file(model_dir)]
    for k in range(1, size):
        path = artifacts.checkpoint(af.FINAL_WEIGHTS, member=k)
        if not tf.io.gfile.exists(path):
            raise UserError(f"--baseline {model_dir}: ensemble member {k} has no {path}")
        files.append(path)
    return files


def previous_config(model_dir: str) -> ModelConfig:
    path = os.path.join(model_dir, af.CONFIG)
    if not tf.io.gfile.exists(path):
        raise UserError(f"--warm-start {model_dir}: {af.CONFIG} is missing; is it a `ctrflow train` MODEL_DIR?")
    with tf.io.gfile.GFile(path) as f:
        return ModelConfig.from_dict(json.loads(f.read())["model"])


def _numeric_encoding(layout: FeatureLayout, config: ModelConfig) -> str:
    """What a bucket row holds; layouts from before positions always used plain bucket rows."""
    return config.numeric_encoding if any(f.position for f in layout.sparse) else "bucket"


def check_compatible(old: FeatureLayout, new: FeatureLayout, old_cfg: ModelConfig, new_cfg: ModelConfig,
                     where: str) -> None:
    problems = []
    if old_cfg.model != new_cfg.model:
        problems.append(f"model {old_cfg.model} != {new_cfg.model}")
    if new_cfg.model == old_cfg.model == "dcnv2" and old_cfg.cross_structure != new_cfg.cross_structure:
        # the DNN's weights have the same shapes in both, but read cross(x0) (stacked) or x0 (parallel)
        problems.append(f"cross_structure {old_cfg.cross_structure} != {new_cfg.cross_structure}")
    if old_cfg.model != "lr" and old_cfg.embedding_dim != new_cfg.embedding_dim:
        problems.append(f"embedding_dim {old_cfg.embedding_dim} != {new_cfg.embedding_dim}")
    old_enc, new_enc = _numeric_encoding(old, old_cfg), _numeric_encoding(new, new_cfg)
    if (old_enc == "ple") != (new_enc == "ple"):  # interpolate and bucket rows are both values at a bucket
        problems.append(f"numeric encoding {old_enc} != {new_enc} (ple rows are increments, bucket rows values; "
                        "--numeric-encoding picks it)")
    if (old.global_index is None) != (new.global_index is None):
        problems.append("one uses the global feat_index layout, the other per-field ids")
    old_fields, new_fields = [f.name for f in old.sparse], [f.name for f in new.sparse]
    if old_fields != new_fields:
        problems.append(f"sparse features {old_fields} != {new_fields}")
    if [f.name for f in old.dense] != [f.name for f in new.dense]:
        problems.append("dense features differ")
    if problems:
        raise IncompatibleModelError(f"--warm-start {where}: incompatible with the new model: " + "; ".join(problems)
                                     + " (train cold, or preprocess with --base from the model's data)")


class RowMap:
    """(new row, old row) pairs of one FieldEmbedding table."""

    def __init__(self):
        self.new: list[np.ndarray] = []
        self.old: list[np.ndarray] = []
        self.fresh = 0

    def add(self, new_rows: np.ndarray, old_rows: np.ndarray) -> None:
        self.new.append(np.asarray(new_rows, np.int64))
        self.old.append(np.asarray(old_rows, np.int64))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.new:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(self.new), np.concatenate(self.old)


def _token_rows(old_tokens: list[bytes], new_tokens: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Ids of new tokens that exist in the old vocabulary, and their old ids."""
    old_index = {t: i for i, t in enumerate(old_tokens)}
    pairs = [(i, old_index[t]) for i, t in enumerate(new_tokens) if t in old_index]
    if not pairs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    new_ids, old_ids = zip(*pairs)
    return np.array(new_ids), np.array(old_ids)


def row_map(schema: Schema, old_layout: FeatureLayout, new_layout: FeatureLayout, vocab_of,
            wide: bool = False) -> RowMap:
    """How the rows of the old (embedding or linear) table map into the new one.

    ``vocab_of(which, name)`` -> the tokens of vocabulary ``name`` of the
    "old" or "new" model. Rows follow ``FieldEmbedding``: per-field ranges in
    layout order, then the global index range. ``wide``: the linear table,
    which also holds the wide-only crosses the embedding table leaves out.
    """
    categorical = {c.name: c for c in schema.categorical}
    rows = RowMap()
    old_offset = new_offset = 0
    pairs = [(o, n) for o, n in zip(old_layout.sparse, new_layout.sparse) if wide or not n.wide_only]
    for old_f, new_f in pairs:
        col = categorical.get(new_f.name)
        vocab = col is not None and col.categorical.vocabulary is not None
        if vocab:
            name = vocab_name(col.name)
            old_t, new_t = vocab_of("old", name), vocab_of("new", name)
            n_new, n_old = _token_rows(old_t, new_t)
            rows.add(new_offset + n_new, old_offset + n_old)
            oov = min(old_f.num_ids - len(old_t), new_f.num_ids - len(new_t))
            rows.add(new_offset + len(new_t) + np.arange(oov), old_offset + len(old_t) + np.arange(oov))
            rows.fresh += new_f.num_ids - len(n_new) - oov
        elif old_f.num_ids == new_f.num_ids:
            rows.add(new_offset + np.arange(new_f.num_ids), old_offset + np.arange(old_f.num_ids))
        else:
            raise IncompatibleModelError(f"feature {new_f.name}: {old_f.num_ids} ids before, {new_f.num_ids} now, "
                                         "and it has no vocabulary to map them by")
        old_offset += old_f.num_ids
        new_offset += new_f.num_ids
    if new_layout.global_index is not None:
        n_new, n_old = _token_rows(vocab_of("old", GLOBAL_VOCAB), vocab_of("new", GLOBAL_VOCAB))
        rows.add(new_offset + n_new, old_offset + n_old)
        rows.fresh += new_layout.global_index.num_ids - len(n_new)
    return rows


def _structural_path(path: str) -> str:
    """A weight path without Keras' per-session numbering of unnamed layers (dense_3 -> dense)."""
    return "/".join(re.sub(r"_\d+$", "", part) for part in path.split("/"))


def paired_weights(old_model, model, where: str) -> list[tuple]:
    """(new weight, old weight or None): by position when both models have the same structure.

    Paths alone do not pair them: unnamed layers are numbered per session
    (``dense`` in yesterday's process is ``dense_4`` in today's).
    """
    old_w, new_w = old_model.weights, model.weights
    if [_structural_path(w.path) for w in old_w] == [_structural_path(w.path) for w in new_w]:
        return list(zip(new_w, old_w))
    by_path = {_structural_path(w.path): w for w in old_w}
    if len(by_path) != len(old_w):
        raise IncompatibleModelError(f"--warm-start {where}: the previous model's layers differ (e.g. hidden_units) "
                                     "and cannot be matched; train cold")
    return [(w, by_path.get(_structural_path(w.path))) for w in new_w]


def table_rows(layout: FeatureLayout, wide: bool) -> int:
    """Rows of ctrflow's id table over ``layout``: the embedding table, or with ``wide`` the linear one."""
    rows = sum(f.num_ids for f in layout.sparse if wide or not f.wide_only)
    return rows + (layout.global_index.num_ids if layout.global_index is not None else 0)


def _table_kind(weight, layout: FeatureLayout) -> bool | None:
    """``wide`` for ctrflow's linear table, False for its embedding table, None for any other weight.

    The path alone is not enough: a custom model's own ``keras.layers.Embedding``
    is also ``.../embeddings``, and copying its rows by token would index rows
    that mean something else. A table has exactly the rows the layout implies.
    """
    if not weight.path.endswith("/embeddings"):
        return None
    wide = "/linear/" in "/" + weight.path
    return wide if int(weight.shape[0]) == table_rows(layout, wide) else None


def warm_start(model, layout: FeatureLayout, config: ModelConfig, schema: Schema, data_dir: str,
               previous: str) -> dict:
    """Copies the previous model's weights into ``model`` (built, not yet trained); returns a report."""
    from ctrflow.model.models import build_model

    previous = previous.rstrip("/")
    old_cfg = previous_config(previous)
    meta = load_metadata(previous)
    check_compatible(meta.layout, layout, old_cfg, config, previous)
    old_model = build_model(meta.layout, old_cfg)
    old_model.load_weights(weights_file(previous))
    old_data = [meta.info["data"]] if meta.info.get("data") else []

    def vocab_of(which: str, name: str) -> list[bytes]:
        tokens = (model_vocabulary(meta.path, old_data, name) if which == "old"
                  else read_vocabulary(os.path.join(data_dir, af.TRANSFORM_ASSETS, name)))
        if tokens is None:
            raise IncompatibleModelError(f"--warm-start {previous}: vocabulary {name} not found in its export or "
                                         "its training data")
        return tokens

    maps = {wide: row_map(schema, meta.layout, layout, vocab_of, wide=wide) for wide in (False, True)}
    copied, fresh = [], []
    for w, old in paired_weights(old_model, model, previous):
        if old is None:
            fresh.append(w.path)
        elif (wide := _table_kind(w, layout)) is not None and _table_kind(old, meta.layout) == wide:
            new_rows, old_rows = maps[wide].arrays()
            value = w.numpy()
            value[new_rows] = old.numpy()[old_rows]
            w.assign(value)
            copied.append(w.path)
        elif tuple(old.shape) == tuple(w.shape):
            w.assign(old.numpy())
            copied.append(w.path)
        else:
            fresh.append(w.path)
    return {"from": previous, "model_version": meta.version, "copied_weights": len(copied),
            "fresh_weights": fresh, "copied_rows": len(maps[False].arrays()[0]), "fresh_rows": int(maps[False].fresh)}

"""Model quality across datasets: ctrflow default / best vs LightGBM and logistic regression.

Writes the "quality" section of BENCHMARKS.md, two tables:

1. **time-ordered splits** (the primary table): train on earlier rows,
   evaluate later ones, as the daily loop runs. Every dataset is cut in its
   time or file order (``Dataset.ordered``): MovieLens 100K by rating
   timestamp (the last 20% of ratings are eval), the Criteo and Avazu samples
   in their file order (Criteo's is the original day order; every Avazu row of
   the sample has the same ``hour``, so file order is the only order left),
   census and frappe as their files give them (no time in either: frappe's
   NFM files are a random split, so its "order" is the file's). The
   validation rows are the **last 10% of train** in that order, written as
   ``ctrflow preprocess --valid`` (a ``valid`` split the trainer selects and
   calibrates on, ``model.validation``), never eval.
2. **random splits** (the second table): the samples' own train / eval files,
   MovieLens 20% of (user, item) pairs by crc32, and the trainer's
   ``--valid-fraction`` hash holdout (``model.inputs.in_holdout``, applied
   here too) as validation.

In both, one ``ctrflow preprocess`` output (cached under
``benchmarks/_work/quality/``) feeds every model, and every model uses the
same three parts of it: train, validation (early stopping, picking "ctrflow
best", tuning LightGBM) and eval (only reported). Cut files are written under
``benchmarks/_work/`` only.

Rows: ctrflow with default flags (``--cache`` only, which changes memory use,
not the model); ctrflow best (the setting with the best *validation* AUC
among a few); LightGBM (benchmark-only dependency, never imported by the
package) on the same transformed features -- categorical and bucket ids as
categorical features, z-scored numerics as numbers (a monotone map of the raw
value, which is all a tree sees), no hashed crosses -- tuned over a handful of
settings on validation with early stopping; logistic regression (``--model lr``,
one-hot ids and buckets plus the schema's crosses, Adagrad 0.1). Every eval
AUC gets a DeLong 95% interval, and each ctrflow row's difference to
LightGBM a paired DeLong interval (``model.slices``): "behind" / "ahead" only
when that interval excludes 0, else "level".

    python benchmarks/quality.py [--only census criteo ...] [--splits time random] [--no-best] [--no-write]
    python benchmarks/quality.py --only census --max-rows 3000 --ctrflow-flags "--epochs 1 --ensemble 1" \\
        --no-best --no-write      # a smoke run on a few thousand rows
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import logging
import os
import shlex
import shutil
import sys
import time
import zlib
from collections.abc import Callable, Sequence

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.report import machine_line, markdown_table, section_head, update_section  # noqa: E402

SHARED = os.path.join(ROOT, "..", "shared", "data")
LOG = logging.getLogger("benchmarks.quality")
WORK = os.path.join(ROOT, "benchmarks", "_work", "quality")
SCHEMAS = os.path.join(ROOT, "schemas")
DEFAULT_FLAGS = ["--cache", "--verbose", "0"]
LR_FLAGS = ["--model", "lr", "--optimizer", "adagrad", "--learning-rate", "0.1", "--ensemble", "1"]
# "ctrflow best": a few settings; the one with the best validation AUC is reported
BEST_SETTINGS = {
    "previous default (lr 3e-3, constant, row decay 2, 10 epochs, patience 2)": [
        "--learning-rate", "0.003", "--lr-schedule", "constant", "--row-weight-decay", "2", "--epochs", "10",
        "--patience", "2"],
    "row decay 2": ["--row-weight-decay", "2"],
    "bucket encoding": ["--numeric-encoding", "bucket"],
    "single model": ["--ensemble", "1"],
    "linear rows decayed (previous default)": ["--linear-row-weight-decay", "0.5"],
    "embedding dim 16 (previous default)": ["--embedding-dim", "16"],
}
EXTRA_SETTINGS: dict[str, dict[str, list[str]]] = {}
LGB_SETTINGS = [{"num_leaves": nl, "min_child_samples": mc, "learning_rate": 0.05, "feature_fraction": 0.8,
                 "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0, "cat_smooth": 10}
                for nl in (7, 15, 31, 63) for mc in (20, 100)]
SPLIT_KINDS = ("time", "random")  # the tables, primary first
EVAL_SHARE = 0.2  # a time split cut from one ordered file: its last 20% are eval (the random MovieLens split's share)
VALID_SHARE = 0.1  # the last 10% of a time split's train rows validate (the trainer's default --valid-fraction)
MAX_ROWS: int | None = None  # --max-rows (smoke runs): every input file keeps its first N data rows

Files = tuple[list[str], list[str]]  # (train files, eval files)
OrderedFiles = tuple[list[str], list[str], list[str]]  # (train files, valid files, eval files)


@dataclasses.dataclass
class Dataset:
    name: str
    schema: str
    prepare: Callable[[str], Files]  # work dir -> the random split's (train files, eval files)
    needs: str | None  # a ../shared/data path that must exist
    split: str  # how the random split's train/eval are formed, for the table
    ordered: Callable[[str], OrderedFiles]  # work dir -> the time split's (train, valid, eval) files
    order: str  # how the time split is cut, for the table


# ------------------------------------------------------------ ordered cuts (pure, unit-tested)


def cut_ordered(rows: Sequence[str], eval_share: float | None = EVAL_SHARE,
                valid_share: float = VALID_SHARE) -> tuple[list[str], list[str], list[str]]:
    """(train, valid, eval) of rows already in time order: eval = the last ``eval_share`` of them (none when
    None: the eval file is given), valid = the last ``valid_share`` of the rest, train = the rows before."""
    rows = list(rows)
    n_eval = round(len(rows) * eval_share) if eval_share else 0
    before, evals = rows[:len(rows) - n_eval], rows[len(rows) - n_eval:]
    n_valid = round(len(before) * valid_share)
    return before[:len(before) - n_valid], before[len(before) - n_valid:], evals


def _data_lines(path: str, skip_header: bool = False, encoding: str = "utf-8") -> list[str]:
    """A file's non-blank lines in file order, without line endings (a first header line dropped if asked)."""
    with open(path, encoding=encoding) as f:
        lines = [line.rstrip("\r\n") for line in f]
    if skip_header and lines:
        lines = lines[1:]
    return [line for line in lines if line.strip()]


def _write_lines(path: str, lines: Sequence[str], header: str | None = None) -> str:
    with open(path, "w") as f:
        f.writelines(line + "\n" for line in ([header] if header is not None else []) + list(lines))
    return path


def _write_cut(work: str, name: str, suffix: str, parts: tuple[list[str], list[str], list[str]],
               header: str | None = None) -> OrderedFiles:
    """Writes the (train, valid, eval) rows of a cut to ``work/<name>_<part><suffix>``; eval skipped when empty."""
    paths = [[_write_lines(os.path.join(work, f"{name}_{part}{suffix}"), rows, header)] if rows else []
             for part, rows in zip(("train", "valid", "eval"), parts)]
    return paths[0], paths[1], paths[2]


# ------------------------------------------------------------------ datasets


def _census(_: str) -> Files:
    d = os.path.join(ROOT, "data", "census")
    return [os.path.join(d, "adult.data")], [os.path.join(d, "adult.test")]


def _census_ordered(work: str) -> OrderedFiles:
    """adult.data / adult.test as given (no time in census); valid = adult.data's last 10% by file order."""
    train, valid, _ = cut_ordered(_data_lines(os.path.join(ROOT, "data", "census", "adult.data")), None)
    files = _write_cut(work, "census", ".data", (train, valid, []))
    return files[0], files[1], _census(work)[1]


def _criteo(_: str) -> Files:
    d = os.path.join(SHARED, "criteo", "wide-resdnn")
    return [os.path.join(d, "train.csv")], [os.path.join(d, "dev.csv"), os.path.join(d, "test.csv")]


def _criteo_ordered(work: str) -> OrderedFiles:
    """wide-resdnn train.csv in its file order (the Kaggle day order); its last 20% are eval.

    The sample's dev/test files are random draws from the same rows, and where each sat between the
    train rows is lost, so they are left out of the time split.
    """
    rows = _data_lines(os.path.join(SHARED, "criteo", "wide-resdnn", "train.csv"))
    return _write_cut(work, "criteo", ".tsv", cut_ordered(rows))


def _avazu(work: str) -> Files:
    """Headerless copies (only the sample's train.csv has a header row)."""
    d = os.path.join(SHARED, "avazu", "wide-resdnn")
    out = [_write_lines(os.path.join(work, f"avazu_{name}.csv"),
                        _data_lines(os.path.join(d, f"{name}.csv"), skip_header=name == "train"))
           for name in ("train", "dev", "test")]
    return out[:1], out[1:]


def _avazu_ordered(work: str) -> OrderedFiles:
    """wide-resdnn train.csv in file order (every sample row has hour 14102100: no finer time); last 20% eval."""
    rows = _data_lines(os.path.join(SHARED, "avazu", "wide-resdnn", "train.csv"), skip_header=True)
    return _write_cut(work, "avazu_ordered", ".csv", cut_ordered(rows))


MOVIELENS_HEADER = "user_id\titem_id\trating\tage\tgender\toccupation\tzip3\trelease_year\tgenres"


def _movielens_rows() -> list[tuple[int, str, str, str]]:
    """(timestamp, user, item, joined TSV line) of every rating in u.data's file order."""
    d = os.path.join(SHARED, "movielens", "ml-100k")
    genres = [line.split("|")[0] for line in _data_lines(os.path.join(d, "u.genre"))]
    users = {}
    for line in _data_lines(os.path.join(d, "u.user")):
        uid, age, gender, occupation, zipcode = line.split("|")
        users[uid] = [age, gender, occupation, zipcode[:3]]
    items = {}
    for line in _data_lines(os.path.join(d, "u.item"), encoding="latin-1"):
        f = line.split("|")
        year = f[2][-4:] if f[2] else ""
        items[f[0]] = [year, "|".join(g for g, flag in zip(genres, f[5:]) if flag == "1")]
    out = []
    for line in _data_lines(os.path.join(d, "u.data")):
        uid, iid, rating, timestamp = line.split("\t")
        out.append((int(timestamp), uid, iid, "\t".join([uid, iid, rating] + users[uid] + items[iid])))
    return out


def _movielens(work: str) -> Files:
    """u.data joined with u.user / u.item; a (user, item) pair goes to eval when crc32 % 5 == 0."""
    split: dict[str, list[str]] = {"train": [], "eval": []}
    for _, uid, iid, line in _movielens_rows():
        split["eval" if zlib.crc32(f"{uid}:{iid}".encode()) % 5 == 0 else "train"].append(line)
    paths = {s: _write_lines(os.path.join(work, f"movielens_{s}.tsv"), rows, MOVIELENS_HEADER)
             for s, rows in split.items()}
    return [paths["train"]], [paths["eval"]]


def _movielens_ordered(work: str) -> OrderedFiles:
    """The same joined rows sorted by rating timestamp (ties in file order): the last 20% of ratings are eval."""
    rows = [line for _, _, _, line in sorted(_movielens_rows(), key=lambda r: r[0])]
    return _write_cut(work, "movielens_ordered", ".tsv", cut_ordered(rows), MOVIELENS_HEADER)


def _frappe(_: str) -> Files:
    d = os.path.join(SHARED, "frappe")
    return [os.path.join(d, "frappe.validation.libfm")], [os.path.join(d, "frappe.test.libfm")]


def _frappe_ordered(work: str) -> OrderedFiles:
    """frappe has no time: the NFM files as given, valid = the last 10% of the train file by file order."""
    train, evals = _frappe(work)
    train_rows, valid_rows, _ = cut_ordered(_data_lines(train[0]), None)
    files = _write_cut(work, "frappe", ".libfm", (train_rows, valid_rows, []))
    return files[0], files[1], evals


DATASETS = {
    "census": Dataset("census", "census", _census, None, "adult.data / adult.test", _census_ordered,
                      "no time: adult.data / adult.test as given, valid = adult.data's last 10% by file order"),
    "criteo": Dataset("criteo", "criteo", _criteo, "criteo/wide-resdnn", "wide-resdnn train / dev+test",
                      _criteo_ordered, "wide-resdnn train.csv in file order (Kaggle day order), last 20% eval"),
    "avazu": Dataset("avazu", "avazu", _avazu, "avazu/wide-resdnn", "wide-resdnn train / dev+test",
                     _avazu_ordered, "wide-resdnn train.csv in file order (one `hour` for every row), last 20% eval"),
    "movielens": Dataset("movielens", "movielens", _movielens, "movielens/ml-100k",
                         "ml-100k, 20% of (user, item) by crc32 to eval", _movielens_ordered,
                         "ml-100k by rating timestamp, last 20% of ratings eval"),
    "frappe": Dataset("frappe", "frappe", _frappe, "frappe", "NFM validation file / NFM test file", _frappe_ordered,
                      "no time: NFM validation file / NFM test file, valid = the train file's last 10% by "
                      "file order (a random split)"),
}


def _limit_rows(files: list[str], schema: str, work: str, max_rows: int) -> list[str]:
    """Copies of ``files`` under ``work/limited/`` with their first ``max_rows`` data rows (smoke runs); the
    schema's skipped lines and header stay, blank and comment lines do not count."""
    from ctrflow.schemas import load_schema

    fmt = load_schema(os.path.join(SCHEMAS, f"{schema}.yaml")).format
    out_dir = os.path.join(work, "limited")
    os.makedirs(out_dir, exist_ok=True)
    out = []
    for i, path in enumerate(files):
        with open(path, encoding=fmt.encoding, newline="") as f:
            lines = f.read().splitlines()
        head = fmt.skip_lines + (1 if fmt.header else 0)
        rows = [line for line in lines[head:]
                if line.strip() and not (fmt.comment and line.startswith(fmt.comment))][:max_rows]
        out.append(_write_lines(os.path.join(out_dir, f"{i}_{os.path.basename(path)}"), lines[:head] + rows))
    return out


def work_dir(ds: Dataset | str, kind: str = "random") -> str:
    """A dataset's work folder for a split kind: ``WORK/<name>`` (random) or ``WORK/time/<name>``; smoke runs
    (``MAX_ROWS``) get their own, so they never reuse or spoil a full run's cached output."""
    name = ds if isinstance(ds, str) else ds.name
    base = os.path.join(WORK, name) if kind == "random" else os.path.join(WORK, kind, name)
    return base + (f"_max{MAX_ROWS}" if MAX_ROWS else "")


def preprocess(ds: Dataset, work: str | None = None,
               prepare: Callable[[str], Files | OrderedFiles] | None = None) -> str:
    """The cached preprocess output of ``ds`` (made once) under ``work`` (default ``work_dir(ds)``).

    ``prepare`` replaces ``ds.prepare``: ``quality_cv.py`` passes one fold's
    (train, eval) files, the time split ``ds.ordered``, whose (train, valid,
    eval) files go to ``--train`` / ``--valid`` / ``--eval``.
    """
    from ctrflow.beam_jobs.preprocess import job
    from ctrflow.pipeline.artifacts import LATEST, live_dir

    work = work or work_dir(ds)
    data = os.path.join(work, "data")
    if os.path.exists(os.path.join(data, LATEST)):  # the live version folder holds manifest, layout, splits
        return live_dir(data)
    os.makedirs(work, exist_ok=True)
    parts = (prepare or ds.prepare)(work)
    train, valid, evals = (parts[0], [], parts[1]) if len(parts) == 2 else parts
    if MAX_ROWS:
        train, valid, evals = (_limit_rows(f, ds.schema, os.path.join(work, name), MAX_ROWS)
                               for name, f in (("train", train), ("valid", valid), ("eval", evals)))
    args = ["--schema", os.path.join(SCHEMAS, f"{ds.schema}.yaml"), "--output", data]
    for flag, files in (("--train", train), ("--valid", valid), ("--eval", evals)):
        for f in files:
            args += [flag, f]
    job.run(args)
    return live_dir(data)


def train_ctrflow(data: str, out: str, flags: list[str]) -> dict:
    import keras

    from ctrflow.model import train

    keras.backend.clear_session()
    if os.path.exists(out):
        shutil.rmtree(out)
    t = time.time()
    metrics = train.run(["--data", data, "--output", out] + DEFAULT_FLAGS + flags)
    metrics["seconds"] = round(time.time() - t, 1)
    return metrics


# ------------------------------------------------------------------ LightGBM


def _read_split(data: str, split: str, valid_fraction: float):
    """(features DataFrame, labels, in-holdout mask) of a preprocess split, model features only."""
    import pandas as pd
    import tensorflow as tf
    import tensorflow_transform as tft

    from ctrflow.model.inputs import in_holdout, split_files
    from ctrflow.pipeline.layout import FeatureLayout

    with open(os.path.join(data, "layout.json")) as f:
        layout = FeatureLayout.from_json(f.read())
    spec = tft.TFTransformOutput(data).transformed_feature_spec()
    files = sorted(glob.glob(split_files(data, split)))
    cols: dict[str, list] = {}
    labels, holdout = [], []
    for records in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(8192):
        parsed = tf.io.parse_example(records, spec)
        labels.append(parsed[layout.label].numpy().reshape(-1))
        holdout.append(in_holdout(records, valid_fraction).numpy())
        for f in layout.sparse:
            if f.wide_only:
                continue
            t = parsed[f.name]
            if f.multivalent:  # multi-hot when small, else dropped (a tree cannot take a bag of ids)
                if f.num_ids > 64:
                    continue
                dense = tf.sparse.to_dense(t, -1).numpy() if isinstance(t, tf.SparseTensor) else \
                    t.to_tensor(-1).numpy()
                for k in range(f.num_ids):
                    cols.setdefault(f"{f.name}={k}", []).append((dense == k).any(axis=1).astype(np.float32))
            else:
                cols.setdefault(f.name, []).append(t.numpy().reshape(-1))
        for f in layout.dense:
            cols.setdefault(f.name, []).append(parsed[f.name].numpy().reshape(-1))
    frame = pd.DataFrame({k: np.concatenate(v) for k, v in cols.items()})
    categorical = [f.name for f in layout.sparse if not f.multivalent and not f.wide_only]
    for c in categorical:
        frame[c] = frame[c].astype("int64").astype("category")
    return frame, np.concatenate(labels), np.concatenate(holdout)


def lightgbm_fit(data: str, valid_fraction: float) -> tuple[dict, np.ndarray, np.ndarray]:
    """LightGBM tuned on the validation rows (early stopping + a small grid): (eval metrics of the best, eval
    labels, eval probabilities in the eval split's record order).

    The validation rows are the trainer's (``model.validation``): the ``valid``
    split when the preprocess output has one (time splits), else the hash
    holdout of ``valid_fraction`` of the train split.
    """
    import lightgbm as lgb
    import pandas as pd

    from ctrflow.model import metrics as mt
    from ctrflow.model.validation import VALID, has_valid_split

    x, y, hold = _read_split(data, "train", valid_fraction)
    x_eval, y_eval, _ = _read_split(data, "eval", valid_fraction)
    if has_valid_split(data):
        x_va, y_va, _ = _read_split(data, VALID, valid_fraction)
        x_tr, y_tr = x, y
    else:
        x_tr, y_tr, x_va, y_va = x[~hold], y[~hold], x[hold], y[hold]
    parts = (x_tr, x_va, x_eval)
    for c in x_tr.columns:  # one category set for all parts
        if isinstance(x_tr[c].dtype, pd.CategoricalDtype):
            cats = sorted(set().union(*(set(part[c].cat.categories) for part in parts)))
            for part in parts:
                part[c] = part[c].cat.set_categories(cats)
    best = None
    for params in LGB_SETTINGS:
        model = lgb.train({"objective": "binary", "metric": "auc", "verbose": -1, "num_threads": 1, "seed": 42,
                           **params}, lgb.Dataset(x_tr, y_tr), num_boost_round=2000,
                          valid_sets=[lgb.Dataset(x_va, y_va)],
                          callbacks=[lgb.early_stopping(50, verbose=False)])
        valid_auc = mt.roc_auc(y_va, model.predict(x_va, num_iteration=model.best_iteration))
        if best is None or valid_auc > best[0]:
            best = (valid_auc, params, model)
    valid_auc, params, model = best
    probs = model.predict(x_eval, num_iteration=model.best_iteration)
    return ({**mt.summary(y_eval, probs), "valid_auc": valid_auc,
             "setting": f"num_leaves {params['num_leaves']}, min_child_samples {params['min_child_samples']}, "
                        f"{model.best_iteration} trees"}, y_eval, probs)


def lightgbm_tuned(data: str, valid_fraction: float) -> dict:
    """``lightgbm_fit``'s eval metrics only (``quality_cv.py``)."""
    return lightgbm_fit(data, valid_fraction)[0]


# ------------------------------------------------------------ intervals (DeLong, model.slices)


def eval_scores(data: str, model_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) of a trained model's export on the eval split, in record order (as LightGBM's)."""
    from ctrflow.model.evaluate import score
    from ctrflow.model.inputs import split_files
    from ctrflow.pipeline.layout import FeatureLayout

    with open(os.path.join(data, "layout.json")) as f:
        label = FeatureLayout.from_json(f.read()).label
    return score(model_dir, split_files(data, "eval"), label, 8192)


def intervals(labels: np.ndarray, probs: np.ndarray, ref_labels: np.ndarray, ref_probs: np.ndarray) -> dict:
    """DeLong 95% interval of the AUC of ``probs``, and of its paired difference to the reference's AUC."""
    from ctrflow.model.slices import Z95, delong_auc, paired_auc_delta

    if not np.array_equal(labels, ref_labels):
        raise ValueError("the two models' eval rows differ: the paired interval needs the same rows in order")
    one = delong_auc(labels, probs)
    d = paired_auc_delta(labels, probs, ref_probs)
    low = high = None
    if d["delta"] is not None:
        low, high = d["delta"] - Z95 * d["delta_se"], d["delta"] + Z95 * d["delta_se"]
    return {"auc_ci": [one["auc_ci_low"], one["auc_ci_high"]], "vs_lightgbm": d["delta"],
            "vs_lightgbm_ci": [low, high]}


def standing(ci: Sequence[float | None]) -> str:
    """'behind' / 'ahead' of LightGBM only when the paired interval excludes 0; else 'level'."""
    low, high = ci
    if low is None or high is None:
        return "n/a"
    return "behind" if high < 0 else "ahead" if low > 0 else "level"


# ------------------------------------------------------------------- driver


def run_dataset(ds: Dataset, best: bool, settings: list[str] | None = None, kind: str = "random") -> dict:
    """Every model of one dataset on one split kind ("time": ``ds.ordered``, "random": ``ds.prepare``)."""
    work = work_dir(ds, kind)
    data = preprocess(ds, work, ds.ordered if kind == "time" else ds.prepare)
    models = os.path.join(work, "models")
    rows = {"default": train_ctrflow(data, os.path.join(models, "default"), [])}
    LOG.warning("%s (%s split) default: eval AUC %.4f", ds.name, kind, rows["default"]["auc"])
    candidates = {"default": rows["default"]}
    dirs = {"default": os.path.join(models, "default")}
    if best:
        for name, flags in {**BEST_SETTINGS, **EXTRA_SETTINGS.get(ds.name, {})}.items():
            if settings and name not in settings:
                continue
            dirs[name] = os.path.join(models, name.replace(" ", "_"))
            candidates[name] = train_ctrflow(data, dirs[name], flags)
            candidates[name]["flags"] = " ".join(flags)
            LOG.warning("%s %s: valid AUC %.4f eval AUC %.4f", ds.name, name,
                        candidates[name]["valid"]["auc"], candidates[name]["auc"])
    pick = max(candidates, key=lambda k: candidates[k]["valid"]["auc"])
    rows["best"] = {**candidates[pick], "setting": pick}
    dirs["best"], dirs["lr"] = dirs[pick], os.path.join(models, "lr")
    rows["lr"] = train_ctrflow(data, dirs["lr"], LR_FLAGS)
    rows["lightgbm"], y_ref, p_ref = lightgbm_fit(data, default_valid_fraction())
    from ctrflow.model.slices import delong_auc

    ref = delong_auc(y_ref, p_ref)
    rows["lightgbm"]["auc_ci"] = [ref["auc_ci_low"], ref["auc_ci_high"]]
    for key in ("default", "best", "lr"):
        rows[key].update(intervals(*eval_scores(data, dirs[key]), y_ref, p_ref))
        rows[key].pop("history", None)  # the saved JSON keeps the table's figures
    rows["candidates"] = {k: {"valid_auc": v["valid"]["auc"], "eval_auc": v["auc"]} for k, v in candidates.items()}
    rows["rows"] = split_rows(data)
    rows["split"] = kind
    return rows


def default_valid_fraction() -> float:
    """The trainer's default ``--valid-fraction``: LightGBM tunes on the same holdout ctrflow selects on."""
    from ctrflow.model.options import TrainerOptions

    return TrainerOptions.__dataclass_fields__["valid_fraction"].default


def split_rows(data: str) -> dict[str, int | None]:
    """Output rows per split of a preprocess output (from its manifest)."""
    with open(os.path.join(data, "manifest.json")) as f:
        manifest = json.load(f)
    return {s: v.get("output_rows") for s, v in manifest.get("splits", {}).items()}


NOTES = """Reading the table (AUCs are deterministic per seed and preprocess output; timings are not compared):
- Default flags: `--embedding-dim 64`, `--numeric-encoding interpolate` (a numeric value's embedding and
  linear weight are piecewise-linear between its bucket edges, from `<name>__position`), `--ensemble 3` (the
  mean of 3 seeds' Platt-scaled probabilities in one SavedModel; `--ensemble 1` for one model),
  `--learning-rate 1e-2 --lr-schedule plateau --row-weight-decay 0.5 --linear-row-weight-decay 0 --epochs 30
  --patience 3`.
- A margin over LightGBM of a few ten-thousandths is inside seed noise: another `--seed` can move it
  across zero.
- "ctrflow best" is the setting with the best validation AUC among those in the last table, so it can score
  below the default on eval.
- Criteo's and Avazu's samples have about 800 validation and 800 / 912 eval rows: an AUC from them has a
  standard error near 0.02, so they cannot tell settings 0.01 apart. The K-fold cross-validation section
  (`benchmarks/quality_cv.py`) is the comparison to read for those two.
- Calibration (mean prediction / eval base rate) is exact on the validation holdout after Platt scaling;
  on eval it also carries the base rate's own sampling error."""


def _ci(ci: Sequence[float | None] | None, signed: bool = False) -> str:
    if not ci or ci[0] is None:
        return "n/a"
    return f"[{ci[0]:+.4f}, {ci[1]:+.4f}]" if signed else f"[{ci[0]:.4f}, {ci[1]:.4f}]"


def _cell(m: dict) -> list[str]:
    return [f"{m['auc']:.4f}", _ci(m.get("auc_ci")), f"{m['logloss']:.4f}", f"{m['calibration']:.3f}"]


def _rows_text(r: dict) -> str:
    n = r["rows"]
    return " / ".join(str(n.get(s)) for s in ("train", "valid", "eval") if s in n)


def render_table(results: dict[str, dict], kind: str) -> str:
    """One split kind's table, its LightGBM verdict line and its settings table."""
    header = ["dataset", "rows train / " + ("valid / " if kind == "time" else "") + "eval", "model", "eval AUC",
              "95% CI (DeLong)", "eval log loss", "calibration", "AUC vs LightGBM", "paired 95% CI", "standing",
              "setting"]
    table = []
    for name, r in results.items():
        ref = r["lightgbm"]["auc"]
        for key, label in (("default", "ctrflow default"), ("best", "ctrflow best"), ("lightgbm", "LightGBM"),
                           ("lr", "logistic regression")):
            m = r[key]
            setting = {"default": f"selected epoch {m.get('selected_epoch')}",
                       "best": f"{m.get('setting')} ({m.get('flags', 'default flags')})",
                       "lightgbm": m.get("setting", ""), "lr": " ".join(LR_FLAGS)}[key]
            versus = ["-", "-", "reference"] if key == "lightgbm" else [
                f"{m['auc'] - ref:+.4f}", _ci(m.get("vs_lightgbm_ci"), signed=True),
                standing(m.get("vs_lightgbm_ci", [None, None]))]
            table.append([name, _rows_text(r), label, *_cell(m), *versus, setting])
    verdict = ", ".join(
        f"{n} {'yes' if r['default']['auc'] >= r['lightgbm']['auc'] - 0.002 else 'no'} "
        f"({r['default']['auc'] - r['lightgbm']['auc']:+.4f}, paired CI "
        f"{_ci(r['default'].get('vs_lightgbm_ci'), signed=True)}: {standing(r['default'].get('vs_lightgbm_ci', [None, None]))})"
        for n, r in results.items())
    settings = [[name, k, f"{v['valid_auc']:.4f}", f"{v['eval_auc']:.4f}"]
                for name, r in results.items() for k, v in r["candidates"].items()]
    return "\n\n".join([
        markdown_table(header, table),
        f"Default flags within 0.002 eval AUC of LightGBM (point estimate; the interval says whether the "
        f"eval set can tell): {verdict}.",
        f"#### ctrflow settings tried for \"best\", {kind} split (picked by validation AUC)",
        markdown_table(["dataset", "setting", "valid AUC", "eval AUC"], settings),
    ])


def render(by_kind: dict[str, dict[str, dict]]) -> str:
    """The quality section: the time-ordered table first, the random one second (whichever ran)."""
    parts = [section_head("Model quality across datasets (`benchmarks/quality.py`)",
                          "eval AUC (with its DeLong interval), log loss and calibration of ctrflow with default "
                          "flags, ctrflow's best setting, LightGBM and logistic regression, each dataset's models "
                          "trained on one `ctrflow preprocess` output; on time-ordered splits first, random ones "
                          "second.", f"{machine_line()}.")]
    if "time" in by_kind:
        parts += [
            "### Time-ordered splits (train on earlier rows, evaluate later ones)",
            "Validation = the last 10% of train in the same order (preprocessed with `--valid` as a `valid` split; "
            "early stopping, Platt scaling, choosing \"ctrflow best\" and tuning LightGBM over "
            f"{len(LGB_SETTINGS)} settings with early stopping), never eval. Splits: "
            + "; ".join(f"{n}: {DATASETS[n].order}" for n in by_kind["time"]) + ".",
            render_table(by_kind["time"], "time")]
    if "random" in by_kind:
        parts += [
            "### Random splits",
            "Validation = the trainer's `--valid-fraction` holdout (10% of the train records by hash). Splits: "
            + "; ".join(f"{n}: {DATASETS[n].split}" for n in by_kind["random"]) + ".",
            render_table(by_kind["random"], "random")]
    parts += [
        "Same preprocess output and same three parts (train, validation, eval) for every model of a dataset and "
        "split. Calibration = mean prediction / eval base rate. ctrflow rows use `--cache` (memory, not model). "
        "\"95% CI\": DeLong's interval of the eval AUC; \"paired 95% CI\": DeLong's interval of the AUC "
        "difference to LightGBM on the same rows (the covariance counts); \"standing\" is \"behind\" or "
        "\"ahead\" only when that interval excludes 0, else \"level\". Timings are not reported: the machine "
        "was shared.",
        NOTES]
    return "\n\n".join(parts)


def present_dataset(name: str) -> Dataset | None:
    """``DATASETS[name]``, or None (saying why) when its folder of ``../shared/data`` is absent."""
    ds = DATASETS[name]
    if ds.needs and not os.path.exists(os.path.join(SHARED, ds.needs)):
        print(f"skipping {name}: {os.path.join(SHARED, ds.needs)} is absent (shared data not present)")
        return None
    return ds


def load_saved(work: str, name: str) -> dict | None:
    """The per-dataset results a previous run saved under ``work`` (for ``--render-only``), if any."""
    path = os.path.join(work, f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def main() -> None:
    global MAX_ROWS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", choices=list(DATASETS), default=list(DATASETS))
    p.add_argument("--splits", nargs="*", choices=SPLIT_KINDS, default=list(SPLIT_KINDS),
                   help="which tables: time-ordered splits and/or random splits (default both)")
    p.add_argument("--no-best", action="store_true", help="skip the 'ctrflow best' settings search")
    p.add_argument("--best", nargs="*", choices=list(BEST_SETTINGS), metavar="SETTING",
                   help="try only these 'ctrflow best' settings (default: all of %(choices)s)")
    p.add_argument("--max-rows", type=int, help="smoke runs: every input file keeps its first N data rows "
                   "(own work folders under benchmarks/_work/quality/, never the full run's)")
    p.add_argument("--ctrflow-flags", default="", help="smoke runs: flags added to every ctrflow training, "
                   "e.g. '--epochs 1 --ensemble 1' (the table is then not the default's)")
    p.add_argument("--no-write", action="store_true", help="print, do not write BENCHMARKS.md")
    p.add_argument("--render-only", action="store_true",
                   help="write the tables from the per-dataset results saved in benchmarks/_work/quality/")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    MAX_ROWS = args.max_rows
    DEFAULT_FLAGS.extend(shlex.split(args.ctrflow_flags))
    by_kind: dict[str, dict[str, dict]] = {}
    for kind in [k for k in SPLIT_KINDS if k in args.splits]:  # the time-ordered table first
        results = {}
        for name in args.only:
            ds = present_dataset(name)
            if ds is None:
                continue
            saved_path = work_dir(name, kind) + ".json"
            if args.render_only:
                if (saved := load_saved(os.path.dirname(saved_path), os.path.basename(work_dir(name, kind)))):
                    results[name] = saved
                continue
            results[name] = run_dataset(ds, best=not args.no_best, settings=args.best, kind=kind)
            os.makedirs(os.path.dirname(saved_path), exist_ok=True)
            with open(saved_path, "w") as f:
                json.dump(results[name], f, indent=2, default=str)
        if results:
            by_kind[kind] = results
    body = render(by_kind)
    print(body)
    if not args.no_write and by_kind and not (args.max_rows or args.ctrflow_flags):
        update_section("quality", body)
    elif not args.no_write and by_kind:
        print("not written to BENCHMARKS.md: --max-rows / --ctrflow-flags make a smoke run, not the benchmark")


if __name__ == "__main__":
    main()

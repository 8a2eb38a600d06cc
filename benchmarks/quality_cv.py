"""K-fold cross-validation of ctrflow's default flags against LightGBM and logistic regression.

Why: ``quality.py`` compares the models on one fixed split, and the Criteo and
Avazu samples have 800 / 912 eval rows there: one split's AUC has a standard
error of about 0.02, so "within 0.002 of LightGBM" cannot be decided on it.
Here a dataset's train and eval files (``quality.Dataset.prepare``) are
pooled and every row goes to one of K folds by crc32 of its line (like
quality.py's MovieLens split). For fold k, train = the other folds and eval =
fold k go through ``ctrflow preprocess`` (``quality.preprocess``, cached per
fold), and the models are trained and scored on that output exactly as in
quality.py: ctrflow default flags, logistic regression (``quality.LR_FLAGS``,
one model) and LightGBM tuned on the trainer's validation holdout
(``quality.lightgbm_tuned``). Reported per dataset: mean eval AUC over folds,
the mean paired difference ctrflow - LightGBM with its standard error across
folds, and the per-fold AUCs. Writes the "quality-cv" section of BENCHMARKS.md,
after "quality".

    python benchmarks/quality_cv.py [--only criteo avazu] [--folds 5] [--run-folds 0 1 ...]
                                    [--ensemble N] [--no-write] [--render-only]

``--run-folds`` and ``--ensemble`` are for smoke checks (a fold subset, a
non-default ensemble size; the table says so). Work files (not committed):
``benchmarks/_work/quality_cv/<dataset>/fold<k>/`` holds the fold's train/eval
files, preprocess output, models and ``result.json`` (reused by a rerun with
the same folds and flags); ``benchmarks/_work/quality_cv/<dataset>.json`` the
dataset's results, which ``--render-only`` renders.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import time
import zlib
from collections.abc import Sequence

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import quality  # noqa: E402
from benchmarks.report import BENCHMARKS_MD, machine_line, markdown_table, section_head, update_section  # noqa: E402

LOG = logging.getLogger("benchmarks.quality_cv")
WORK = os.path.join(ROOT, "benchmarks", "_work", "quality_cv")
SECTION = "quality-cv"
TARGET = 0.002  # issue 13: ctrflow default within 0.002 AUC of LightGBM or better
# the quality section's logistic regression, one model (quality.LR_FLAGS may already say so)
LR_CV_FLAGS = quality.LR_FLAGS + ([] if "--ensemble" in quality.LR_FLAGS else ["--ensemble", "1"])
METRIC_KEYS = ("auc", "logloss", "calibration", "eval_rows", "selected_epoch", "epochs_run", "seconds", "setting",
               "valid_auc")


# ------------------------------------------------------------ fold assignment (pure, unit-tested)


@dataclasses.dataclass(frozen=True)
class PooledRows:
    """A dataset's rows from all its files, as raw lines without line endings."""

    prefix: tuple[bytes, ...]  # the first file's skipped lines and header, written on top of every fold file
    rows: tuple[bytes, ...]  # data rows in file order
    not_rows: int  # comment and blank lines (not rows, so in no fold)


def fold_of(line: bytes, folds: int) -> int:
    """The fold of one row: crc32 of its text (without line ending) mod ``folds``.

    Stable across runs, machines and file order; identical lines share a fold,
    so a duplicated row is never in both a model's train and eval data.
    """
    return zlib.crc32(line) % folds


def assign_folds(rows: Sequence[bytes], folds: int) -> np.ndarray:
    """The fold of every row (``fold_of``), as an int array aligned with ``rows``."""
    if folds < 2:
        raise ValueError(f"--folds must be at least 2, got {folds}")
    return np.fromiter((fold_of(r, folds) for r in rows), dtype=np.int64, count=len(rows))


def fold_split(rows: Sequence[bytes], folds: int, k: int) -> tuple[list[bytes], list[bytes]]:
    """(train rows, eval rows) of fold ``k``: eval = the rows in fold k, train = all others, in input order."""
    if not 0 <= k < folds:
        raise ValueError(f"fold {k} is outside 0..{folds - 1}")
    assigned = assign_folds(rows, folds)
    train = [r for r, f in zip(rows, assigned) if f != k]
    evals = [r for r, f in zip(rows, assigned) if f == k]
    return train, evals


def pool_rows(files: Sequence[str], header: bool = False, skip_lines: int = 0, comment: str | None = None,
              quoting: bool = False, encoding: str = "utf-8") -> PooledRows:
    """Every data row of ``files`` (a schema's text format: skipped lines, header, comment lines).

    Works on bytes so the hash does not depend on decoding. A quoted field
    spanning lines would be cut in two by a line split: that stops with the
    file and line instead.
    """
    prefix: tuple[bytes, ...] | None = None
    rows: list[bytes] = []
    not_rows = 0
    mark = comment.encode(encoding) if comment else None
    for path in files:
        with open(path, "rb") as f:
            lines = f.read().splitlines()
        head = skip_lines + (1 if header else 0)
        if len(lines) < head:
            raise ValueError(f"{path}: fewer lines ({len(lines)}) than the schema's skipped lines and header")
        if prefix is None:
            prefix = tuple(lines[:head])
        elif header and lines[head - 1] != prefix[-1]:
            raise ValueError(f"{path}: header {lines[head - 1][:80]!r} differs from the first file's "
                             f"{prefix[-1][:80]!r}")
        for number, line in enumerate(lines[head:], start=head + 1):
            if not line.strip() or (mark is not None and line.startswith(mark)):
                not_rows += 1
                continue
            if quoting and line.count(b'"') % 2:
                raise ValueError(f"{path}:{number}: a quoted field spans lines; folds split files by line")
            rows.append(line)
    return PooledRows(prefix or (), tuple(rows), not_rows)


def write_fold(pooled: PooledRows, folds: int, k: int, directory: str, suffix: str) -> tuple[list[str], list[str]]:
    """Writes fold ``k``'s train and eval files under ``directory``; returns ([train], [eval]) like ``prepare``."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for name, part in zip(("train", "eval"), fold_split(pooled.rows, folds, k)):
        path = os.path.join(directory, f"{name}{suffix}")
        with open(path, "wb") as f:
            f.writelines(line + b"\n" for line in (*pooled.prefix, *part))
        paths.append(path)
    return [paths[0]], [paths[1]]


# ------------------------------------------------------------------- one fold


def _slim(metrics: dict) -> dict:
    """The figures the table uses (not the training history)."""
    out = {k: metrics[k] for k in METRIC_KEYS if k in metrics}
    if isinstance(metrics.get("valid"), dict):
        out["valid_auc"] = metrics["valid"]["auc"]
    return out


def run_fold(ds: quality.Dataset, pooled: PooledRows, suffix: str, folds: int, k: int,
             ctrflow_flags: list[str]) -> dict:
    """One fold: its preprocess output (cached) and the three models' eval metrics (cached in result.json)."""
    directory = os.path.join(WORK, ds.name, f"fold{k}")
    partition = {"folds": folds, "fold": k, "rows_crc32": zlib.crc32(b"\n".join(pooled.rows))}
    partition_path = os.path.join(directory, "partition.json")
    if os.path.exists(partition_path):
        with open(partition_path) as f:
            if json.load(f) != partition:  # another K or other input rows: the fold's files are stale
                shutil.rmtree(directory)
    result_path = os.path.join(directory, "result.json")
    if os.path.exists(result_path):
        with open(result_path) as f:
            cached = json.load(f)
        if cached.get("ctrflow_flags") == ctrflow_flags:
            LOG.warning("%s fold %d/%d: reusing %s", ds.name, k, folds, result_path)
            return cached
    os.makedirs(directory, exist_ok=True)
    with open(partition_path, "w") as f:
        json.dump(partition, f)
    t = time.time()
    data = quality.preprocess(ds, work=directory,
                              prepare=lambda work: write_fold(pooled, folds, k, work, suffix))
    result: dict = {"fold": k, "folds": folds, "ctrflow_flags": ctrflow_flags, "rows": quality.split_rows(data),
                    "seconds": {"preprocess": round(time.time() - t, 1)}}
    models = os.path.join(directory, "models")
    result["default"] = _slim(quality.train_ctrflow(data, os.path.join(models, "default"), ctrflow_flags))
    result["seconds"]["ctrflow"] = result["default"]["seconds"]
    LOG.warning("%s fold %d/%d ctrflow: eval AUC %.4f (%.0f s)", ds.name, k, folds, result["default"]["auc"],
                result["default"]["seconds"])
    result["lr"] = _slim(quality.train_ctrflow(data, os.path.join(models, "lr"), LR_CV_FLAGS))
    result["seconds"]["lr"] = result["lr"]["seconds"]
    t = time.time()
    result["lightgbm"] = _slim(quality.lightgbm_tuned(data, quality.default_valid_fraction()))
    result["seconds"]["lightgbm"] = round(time.time() - t, 1)
    LOG.warning("%s fold %d/%d: LightGBM %.4f, LR %.4f; seconds %s", ds.name, k, folds,
                result["lightgbm"]["auc"], result["lr"]["auc"], result["seconds"])
    with open(result_path, "w") as f:
        json.dump(result, f, indent=2)
    return result


def run_dataset(ds: quality.Dataset, folds: int, run_folds: list[int], ctrflow_flags: list[str]) -> dict:
    """Pools ``ds``'s files, runs the chosen folds; the per-fold results and the pooling counts."""
    from ctrflow.schemas import load_schema

    fmt = load_schema(os.path.join(quality.SCHEMAS, f"{ds.schema}.yaml")).format
    if fmt.type != "csv":
        raise ValueError(f"{ds.name}: quality_cv splits text files by line; format {fmt.type!r} is not text")
    work = os.path.join(WORK, ds.name)
    os.makedirs(work, exist_ok=True)
    train, evals = ds.prepare(work)
    pooled = pool_rows(train + evals, header=fmt.header, skip_lines=fmt.skip_lines, comment=fmt.comment,
                       quoting=fmt.quoting, encoding=fmt.encoding)
    suffix = os.path.splitext(train[0])[1] or ".txt"
    sizes = np.bincount(assign_folds(pooled.rows, folds), minlength=folds)
    LOG.warning("%s: %d rows pooled from %s (%d comment/blank lines), fold sizes %s", ds.name, len(pooled.rows),
                ", ".join(os.path.basename(p) for p in train + evals), pooled.not_rows, sizes.tolist())
    result = {"dataset": ds.name, "folds": folds, "pooled_rows": len(pooled.rows), "not_rows": pooled.not_rows,
              "fold_sizes": sizes.tolist(), "ctrflow_flags": ctrflow_flags, "fold_results": []}
    for k in run_folds:  # saved after every fold, so --render-only can show an interrupted run's folds
        result["fold_results"].append(run_fold(ds, pooled, suffix, folds, k, ctrflow_flags))
        with open(os.path.join(WORK, f"{ds.name}.json"), "w") as f:
            json.dump(result, f, indent=2)
    return result


# ------------------------------------------------------------------ summary


def paired_difference(a: Sequence[float], b: Sequence[float], eval_over_train: float) -> dict[str, float]:
    """Mean of a - b over folds, its standard error std/sqrt(K), and the Nadeau-Bengio corrected one.

    The folds' training sets overlap, so the K differences are correlated and
    std/sqrt(K) understates the uncertainty; Nadeau & Bengio (2003) scale the
    variance by (1/K + n_eval/n_train) instead of 1/K.
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    k = d.size
    sd = float(d.std(ddof=1)) if k > 1 else float("nan")
    return {"mean": float(d.mean()), "sd": sd, "se": sd / math.sqrt(k),
            "se_corrected": sd * math.sqrt(1 / k + eval_over_train), "folds": k}


# Student t 97.5% quantiles for 1..10 degrees of freedom (a table: scipy is not a dependency)
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def verdict(diff: dict[str, float]) -> str:
    """Whether ctrflow is within TARGET of LightGBM or better: the 95% t interval (K-1 degrees of freedom,
    corrected SE) of the mean difference lies above -TARGET ("yes"), below it ("no"), or straddles it."""
    se = diff["se_corrected"]
    if diff["folds"] < 2 or math.isnan(se):
        return "undecided (one fold)"
    half = T_975[min(diff["folds"] - 1, len(T_975)) - 1] * se
    low, high = diff["mean"] - half, diff["mean"] + half
    if low >= -TARGET:
        return f"yes (95% interval {low:+.4f} .. {high:+.4f})"
    if high < -TARGET:
        return f"no (95% interval {low:+.4f} .. {high:+.4f})"
    return f"undecided (95% interval {low:+.4f} .. {high:+.4f} contains -{TARGET})"


def summarize(result: dict) -> dict:
    folds = result["fold_results"]
    aucs = {m: [f[m]["auc"] for f in folds] for m in ("default", "lightgbm", "lr")}
    ratio = float(np.mean([f["rows"]["eval"] / f["rows"]["train"] for f in folds]))
    return {"mean_auc": {m: float(np.mean(v)) for m, v in aucs.items()},
            "mean_logloss": {m: float(np.mean([f[m]["logloss"] for f in folds])) for m in aucs},
            "diff": paired_difference(aucs["default"], aucs["lightgbm"], ratio),
            "diff_lr": paired_difference(aucs["default"], aucs["lr"], ratio)}


def _single_split(name: str) -> str:
    """ctrflow default - LightGBM on quality.py's fixed split, from its saved results when present."""
    path = os.path.join(quality.WORK, f"{name}.json")
    if not os.path.exists(path):
        return "n/a"
    with open(path) as f:
        r = json.load(f)
    return f"{r['default']['auc'] - r['lightgbm']['auc']:+.4f} ({r['rows'].get('eval')} eval rows)"


HOW_TO_READ = """How to read this: every pooled row is in exactly one eval fold (crc32 of its line mod K), and
fold k's models train on the other K-1 folds (their own 10% validation holdout picks ctrflow's epochs and
LightGBM's setting, as in the quality section), so each model is scored once on every row. Both models see
the same folds, so the paired difference cancels how hard a fold happens to be; it is the figure to read,
not the two means side by side. "SE" is std/sqrt(K) of the K per-fold differences. The folds' training sets
overlap (each pair shares (K-2)/(K-1) of its rows), so the K differences are not independent and that SE is
too small; "corrected SE" uses Nadeau & Bengio's (2003) variance factor 1/K + n_eval/n_train instead of
1/K, and the verdict uses it: the 95% t interval (K-1 degrees of freedom) of the mean difference is above
-0.002 ("yes"), below it ("no") or contains it ("undecided"). With K = 3 to 5 differences that interval is
wide: an undecided row means these samples are too small to tell, not that the models are equal. A fold
trains on (K-1)/K of the pooled rows, fewer than the fixed split's train file (90% of them on Criteo and
Avazu), so the means are not the quality section's figures. Pooled AUC (all folds' predictions in one
ranking) is not reported: `ctrflow train` returns metrics, not predictions, and rescoring every model would
add a scoring pass per fold. Seconds are from a shared machine (noisy)."""


def render(results: dict[str, dict]) -> str:
    models = ("default", "lightgbm", "lr")
    summary_rows, fold_rows, notes = [], [], []
    for name, r in results.items():
        folds = r["fold_results"]
        if not folds:
            continue
        s = summarize(r)
        d = s["diff"]
        label = "ctrflow default" if not r["ctrflow_flags"] else f"ctrflow `{' '.join(r['ctrflow_flags'])}`"
        ran = f"{len(folds)} of {r['folds']}" if len(folds) < r["folds"] else str(r["folds"])
        summary_rows.append([
            name, f"{r['pooled_rows']:,}", ran, label, f"{s['mean_auc']['default']:.4f}",
            f"{s['mean_auc']['lightgbm']:.4f}", f"{s['mean_auc']['lr']:.4f}",
            f"{d['mean']:+.4f} ± {d['se']:.4f} (corrected {d['se_corrected']:.4f})", verdict(d),
            f"{s['diff_lr']['mean']:+.4f} ± {s['diff_lr']['se']:.4f}", _single_split(name)])
        for f in folds:
            fold_rows.append([name, f["fold"], f"{f['rows']['train']:,} / {f['rows']['eval']:,}",
                              *(f"{f[m]['auc']:.4f}" for m in models),
                              f"{f['default']['auc'] - f['lightgbm']['auc']:+.4f}", f["lightgbm"].get("setting", ""),
                              f["default"].get("selected_epoch"),
                              " / ".join(f"{f['seconds'].get(p, float('nan')):.0f}"
                                         for p in ("preprocess", "ctrflow", "lr", "lightgbm"))])
        notes.append(f"{name}: {r['pooled_rows']:,} rows pooled ({r['not_rows']} comment/blank lines are not "
                     f"rows), fold sizes {r['fold_sizes']}")
    header = ["dataset", "rows pooled", "folds", "ctrflow row", "ctrflow mean AUC", "LightGBM mean AUC",
              "LR mean AUC", "ctrflow - LightGBM (mean ± SE)", f"within {TARGET} of LightGBM?",
              "ctrflow - LR (mean ± SE)", "single split (quality section)"]
    fold_header = ["dataset", "fold", "rows train / eval", "ctrflow AUC", "LightGBM AUC", "LR AUC",
                   "ctrflow - LightGBM", "LightGBM setting", "ctrflow selected epoch",
                   "seconds: preprocess / ctrflow / LR / LightGBM"]
    return "\n\n".join([
        section_head("Model quality, K-fold cross-validation (`benchmarks/quality_cv.py`)",
                     "ctrflow with default flags against LightGBM and logistic regression on the same K folds of "
                     "the small Criteo and Avazu samples: mean AUC and the paired difference, with its interval.",
                     f"{machine_line()}."),
        "The dataset's train and eval files (the quality section's "
        "split) are pooled and cut into K folds; per fold, `ctrflow preprocess` on train = the other folds and "
        "eval = the fold, then the quality section's models on that output: ctrflow default flags, logistic "
        f"regression (`{' '.join(LR_CV_FLAGS)}`) and LightGBM tuned over {len(quality.LGB_SETTINGS)} settings "
        "on the trainer's validation holdout. " + "; ".join(notes) + ".",
        markdown_table(header, summary_rows),
        HOW_TO_READ,
        "### Per fold",
        markdown_table(fold_header, fold_rows),
    ])


# ------------------------------------------------------------------- driver


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", choices=list(quality.DATASETS), default=["criteo", "avazu"])
    p.add_argument("--folds", type=int, default=5, help="K (default 5)")
    p.add_argument("--run-folds", nargs="*", type=int, metavar="K",
                   help="run only these folds of the K (smoke checks; the table says 'n of K')")
    p.add_argument("--ensemble", type=int, help="ctrflow --ensemble for the ctrflow row (smoke checks; "
                   "default: the default flags, whose ensemble is 3)")
    p.add_argument("--no-write", action="store_true", help="print, do not write BENCHMARKS.md")
    p.add_argument("--render-only", action="store_true",
                   help="write the tables from the results saved in benchmarks/_work/quality_cv/")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.folds < 2:
        p.error(f"--folds must be at least 2, got {args.folds}")
    run_folds = args.run_folds if args.run_folds is not None else list(range(args.folds))
    if any(not 0 <= k < args.folds for k in run_folds):
        p.error(f"--run-folds must be in 0..{args.folds - 1}, got {run_folds}")
    flags = ["--ensemble", str(args.ensemble)] if args.ensemble is not None else []
    results = {}
    for name in args.only:
        ds = quality.present_dataset(name)
        if ds is None:
            continue
        if args.render_only:
            if (saved := quality.load_saved(WORK, name)) is not None:
                results[name] = saved
            continue
        results[name] = run_dataset(ds, args.folds, run_folds, flags)
    body = render(results)
    print(body)
    if not args.no_write and results:
        update_section(SECTION, body, after="quality")
        print(f"wrote the {SECTION!r} section of {BENCHMARKS_MD}")


if __name__ == "__main__":
    main()

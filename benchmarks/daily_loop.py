"""The daily loop end to end on MovieLens 100K, cut into weekly "days"; writes BENCHMARKS.md "Daily loop".

Every rating (``../shared/data/movielens/ml-100k/u.data``: user, item, rating,
timestamp, tab-separated) is one row, positive when rating >= 4, with the
user's age, gender and occupation from u.user. Week w (Monday-based, from the
first rating) becomes the synthetic date 2026-11-01 + w days, so the CLI's
``{date}`` windows apply unchanged. For each step k (weeks 0..k known):

1. window: ``preprocess --dates W0:Wk --analysis-cache C --base <previous window>``
   (only week k is analyzed; vocabularies grow append-only);
2. new day: ``preprocess --dates Wk --base <window>`` (same ids as the window);
3. cold: ``train`` on the window, full length (``--epochs COLD_EPOCHS``);
4. warm: ``train --warm-start <previous warm model>`` on the new day, one epoch,
   with ``--baseline <previous warm model>`` (the promotion gate);
5. both models ``score`` week k+1 and ``monitor`` joins it with its labels.

It prints and records, per step, the warm and cold AUC on week k+1 (from the
monitor), training seconds, and the vocabulary growth; the monitor pages stay
in the work folder. It also times the analysis cache: a 7-week window with 6
weeks cached against the same window with an empty cache and against plain
tf.Transform analysis. Timings are wall-clock on a shared machine: noisy.

    python benchmarks/daily_loop.py [--steps 4] [--first-weeks 8] [--work /tmp/ctrflow-daily-loop]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script from anywhere

from benchmarks.report import ROOT, machine_line, markdown_table, section_head, update_section  # noqa: E402
from ctrflow.pipeline.artifacts import live_dir  # noqa: E402

DATA = os.path.join(ROOT, "..", "shared", "data", "movielens", "ml-100k")
SECTION = "daily_loop"
START = datetime.date(2026, 11, 1)
SCHEMA = """
name: movielens_weekly
format: {type: csv, header: true}
columns:
  - {name: id, role: id, dtype: int64}
  - {name: user_id, role: categorical, vocabulary: {num_oov_buckets: 1}}
  - {name: item_id, role: categorical, vocabulary: {num_oov_buckets: 1}}
  - {name: age, role: numeric, bucketize: {num_buckets: 8}}
  - {name: gender, role: categorical, vocabulary: {num_oov_buckets: 1}}
  - {name: occupation, role: categorical, vocabulary: {num_oov_buckets: 1}}
  - {name: liked, role: label, positive: ["1"], negative: ["0"]}
"""
TRAIN = ["--model", "deepfm", "--embedding-dim", "8", "--hidden-units", "64", "32", "--batch-size", "256",
         "--verbose", "0", "--seed", "1"]


def date_of(week: int) -> str:
    return (START + datetime.timedelta(days=week)).isoformat()


def write_weeks(work: str) -> int:
    """events/{date}/part.csv and labels/{date}/labels.csv per week; returns the number of weeks."""
    ratings = pd.read_csv(os.path.join(DATA, "u.data"), sep="\t", names=["user_id", "item_id", "rating", "ts"])
    users = pd.read_csv(os.path.join(DATA, "u.user"), sep="|", names=["user_id", "age", "gender", "occupation", "zip"])
    df = ratings.merge(users.drop(columns="zip"), on="user_id", how="left").sort_values("ts", kind="stable")
    df["id"] = np.arange(len(df))
    df["liked"] = (df["rating"] >= 4).astype(int)
    first = pd.to_datetime(df["ts"].min(), unit="s").normalize()
    df["week"] = ((pd.to_datetime(df["ts"], unit="s") - first).dt.days // 7).astype(int)
    for week, part in df.groupby("week"):
        d = date_of(week)
        os.makedirs(os.path.join(work, "events", d), exist_ok=True)
        os.makedirs(os.path.join(work, "labels", d), exist_ok=True)
        part[["id", "user_id", "item_id", "age", "gender", "occupation", "liked"]].to_csv(
            os.path.join(work, "events", d, "part.csv"), index=False)
        part[["id", "liked"]].to_csv(os.path.join(work, "labels", d, "labels.csv"), index=False)
    return int(df["week"].max()) + 1


def ctrflow(*args: str) -> tuple[float, int]:
    """Runs one ctrflow command; (seconds, exit status). Output goes to the work log."""
    t0 = time.perf_counter()
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ctrflow"), *args], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - t0
    with open(os.path.join(LOG_DIR, "commands.log"), "a") as log:
        log.write(f"$ ctrflow {' '.join(args)}\n{proc.stdout[-3000:]}\n[exit {proc.returncode}, {seconds:.1f}s]\n")
    if proc.returncode not in (0, 3):  # 3: the promotion gate refused, which the loop reports
        raise RuntimeError(f"ctrflow {args[0]} failed ({proc.returncode}); see {LOG_DIR}/commands.log")
    return seconds, proc.returncode


def preprocess(work: str, out: str, dates: str, *extra: str) -> tuple[float, dict]:
    seconds, _ = ctrflow("preprocess", "--schema", os.path.join(work, "schema.yaml"), "--train",
                         os.path.join(work, "events", "{date}", "*.csv"), "--dates", dates, "--output", out, *extra)
    with open(os.path.join(live_dir(out), "manifest.json")) as f:  # the published version folder
        return seconds, json.load(f)


def score_and_monitor(work: str, model: str, week: int, name: str) -> dict:
    d = date_of(week)
    ctrflow("score", "--model", model, "--input", os.path.join(work, "events", "{date}", "*.csv"), "--date", d,
            "--output", os.path.join(work, "scores", name))
    ctrflow("monitor", "--scores", os.path.join(work, "scores", name), "--labels",
            os.path.join(work, "labels", "{date}", "*.csv"), "--date", d,
            "--output", os.path.join(work, "monitor", name))
    with open(os.path.join(work, "monitor", name, f"date={d}", "metrics.json")) as f:
        return json.load(f)


def train_seconds(model: str) -> float:
    with open(os.path.join(model, "metrics.json")) as f:
        return json.load(f)["train_seconds"]


def cache_benchmark(work: str) -> list[list]:
    """A 7-week window: 6 weeks cached vs an empty cache vs tf.Transform's own analysis."""
    window = f"{date_of(1)}:{date_of(7)}"
    cache = os.path.join(work, "bench_cache")
    shutil.rmtree(cache, ignore_errors=True)
    preprocess(work, os.path.join(work, "bench_warmup"), f"{date_of(1)}:{date_of(6)}", "--analysis-cache", cache)
    cached_s, cached = preprocess(work, os.path.join(work, "bench_cached"), window, "--analysis-cache", cache)
    empty = os.path.join(work, "bench_empty_cache")
    shutil.rmtree(empty, ignore_errors=True)
    scratch_s, _ = preprocess(work, os.path.join(work, "bench_scratch"), window, "--analysis-cache", empty)
    tft_s, manifest = preprocess(work, os.path.join(work, "bench_tft"), window)
    rows = manifest["splits"]["train"]["input_rows"]
    vocab = [os.path.join(live_dir(os.path.join(work, d)), "transform_fn", "assets", "vocab_item_id")
             for d in ("bench_cached", "bench_tft")]
    with open(vocab[0]) as a, open(vocab[1]) as b:
        same = a.read() == b.read()
    return [["6 of 7 weeks cached", cached["analysis_cache"]["analyzed_dates"].__len__(), rows, f"{cached_s:.1f}",
             f"{scratch_s / cached_s:.2f}x", "yes" if same else "no"],
            ["empty cache (all 7 analyzed)", 7, rows, f"{scratch_s:.1f}", "1.00x", "yes"],
            ["no cache (tf.Transform analysis)", 7, rows, f"{tft_s:.1f}", f"{scratch_s / tft_s:.2f}x", "-"]]


LOG_DIR = "."


def main() -> int:
    global LOG_DIR
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--first-weeks", type=int, default=8, help="weeks known before the first step")
    p.add_argument("--cold-epochs", type=int, default=3)
    p.add_argument("--work", default="/tmp/ctrflow-daily-loop")
    p.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = p.parse_args()
    if not os.path.exists(os.path.join(DATA, "u.data")):
        print(f"SKIP: MovieLens 100K not found at {os.path.normpath(DATA)} (../shared is absent)")
        return 0
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    LOG_DIR = args.work
    with open(os.path.join(args.work, "schema.yaml"), "w") as f:
        f.write(SCHEMA)
    n_weeks = write_weeks(args.work)
    cache = os.path.join(args.work, "cache")
    rows, prev_window, prev_warm = [], None, None
    for step in range(args.steps):
        k = args.first_weeks - 1 + step
        if k + 1 >= n_weeks:
            break
        window_dir, new_dir = os.path.join(args.work, f"window{k}"), os.path.join(args.work, f"new{k}")
        base = ["--base", prev_window] if prev_window else []
        pp_s, manifest = preprocess(args.work, window_dir, f"{date_of(0)}:{date_of(k)}", "--analysis-cache", cache,
                                    *base)
        growth = manifest.get("vocabulary_growth", {})
        gained = {n.replace("vocab_", ""): g["gained"] for n, g in growth.items() if n in ("vocab_user_id",
                                                                                           "vocab_item_id")}
        cold = os.path.join(args.work, f"cold{k}")
        ctrflow("train", "--data", window_dir, "--output", cold, "--epochs", str(args.cold_epochs), *TRAIN)
        if prev_warm is None:  # the first warm model is the first cold one
            warm, warm_s, promote = cold, None, None
        else:
            preprocess(args.work, new_dir, date_of(k), "--base", window_dir)
            warm = os.path.join(args.work, f"warm{k}")
            _, status = ctrflow("train", "--data", new_dir, "--output", warm, "--epochs", "1", *TRAIN,
                                "--warm-start", prev_warm, "--baseline", prev_warm, "--require-better", "0.01")
            warm_s = train_seconds(warm)
            promote = status == 0
        m_cold = score_and_monitor(args.work, cold, k + 1, f"cold{k}")
        m_warm = m_cold if warm == cold else score_and_monitor(args.work, warm, k + 1, f"warm{k}")
        row = [f"{k + 1} (week {k + 1} scored)", manifest["splits"]["train"]["input_rows"],
               f"{m_warm['auc']:.4f}", f"{m_cold['auc']:.4f}",
               "-" if warm_s is None else f"{warm_s:.1f}", f"{train_seconds(cold):.1f}",
               ", ".join(f"{n} +{g}" for n, g in gained.items()) or "-",
               f"{manifest['analysis_cache']['cached_dates']}/{manifest['analysis_cache']['dates']}",
               f"{pp_s:.1f}", "-" if promote is None else str(promote).lower(),
               f"{m_warm.get('psi', float('nan')):.3f}"]
        print(" | ".join(str(c) for c in row), flush=True)
        rows.append(row)
        prev_window, prev_warm = window_dir, warm
    header = ["weeks trained", "window rows", "warm AUC", "cold AUC", "warm train s (1 epoch, new week)",
              f"cold train s ({args.cold_epochs} epochs, window)", "vocabulary growth", "weeks cached",
              "window preprocess s", "gate promoted (tol 0.01)", "warm score PSI"]
    cache_rows = cache_benchmark(args.work)
    for r in cache_rows:
        print(" | ".join(str(c) for c in r), flush=True)
    body = "\n".join([
        section_head("Daily loop: MovieLens 100K in weekly steps (`benchmarks/daily_loop.py`)",
                     "the daily loop end to end (preprocess with the analysis cache and `--base`, warm and cold "
                     "training, the promotion gate, scoring, `ctrflow monitor`) on MovieLens 100K cut into weeks, "
                     "and what the analysis cache saves.",
                     f"{machine_line()}. Shared machine (other jobs running): timings are noisy, compare within "
                     "a row."),
        "",
        "Each step preprocesses the window of weeks 0..k with the analysis cache and `--base` (append-only ids), "
        f"trains cold on the window ({args.cold_epochs} epochs) and warm (`--warm-start`, 1 epoch on week k only), "
        "then scores week k+1 with both and measures them with `ctrflow monitor` once its labels are joined. "
        "Positive = rating >= 4. The first step's warm model is its cold one.",
        "",
        markdown_table(header, rows),
        "",
        "### Analysis cache: a 7-week window with 6 weeks cached",
        "",
        markdown_table(["run", "weeks analyzed", "rows", "preprocess s", "speed-up vs empty cache",
                        "vocabulary identical to tf.Transform's"], cache_rows),
        "",
        "Preprocess time includes the transform pass over the whole window and Beam/TF start-up, which the cache "
        "cannot remove; the cached run reads only the new week for analysis.",
    ])
    if not args.no_write:
        update_section(SECTION, body)
        print(f"wrote the {SECTION} section of BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``ctrflow monitor``: how yesterday's scores did once the labels arrived.

For each date it joins the scored partition ``SCORES/date=D/`` (written by
``ctrflow score``) with that date's labels (``--labels 'labels/{date}/*.csv'``,
CSV or Parquet holding the schema's id column(s) and label column) by id, and
writes under ``--output``::

    date=D/metrics.json   AUC, log loss, calibration (mean score / positive rate), rows matched,
                          scores without a label, labels without a score, duplicate label ids,
                          PSI of the day's score distribution against the model's eval scores
    monitor.json          every date's figures (merged with earlier runs: the trend grows daily)
    index.html + *.png    the trend page: one chart per figure over the dates

``--fail-on 'auc<0.70,psi>0.2,calibration>1.3'`` exits with status
``EXIT_THRESHOLD`` (after writing everything) when any date breaks a rule.
Label values are read with the schema's label rule (``positive``/``negative``);
a label row with another value is counted in ``invalid_label_rows``, never
silently dropped.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import operator
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from ctrflow.beam_jobs.input.plan import match_files
from ctrflow.beam_jobs.options import parse_dates
from ctrflow.beam_jobs.outputs import date_partitions as partition
from ctrflow.beam_jobs.outputs import manifest as mf
from ctrflow.common.errors import CheckFailed, OptionsError, UserError
from ctrflow.common.flags import FlagParser, build_parser, from_namespace, option, to_dict
from ctrflow.common.logs import setup_logging
from ctrflow.model import metrics as mt
from ctrflow.model.artifact import load_metadata
from ctrflow.pipeline import score_profile
from ctrflow.pipeline.artifacts import live_dir
from ctrflow.pipeline.monitor_html import write_trend_page

EXIT_THRESHOLD = 4
MONITOR_FILE = "monitor.json"
_OPS = {"<": operator.lt, ">": operator.gt}
METRICS = ("auc", "logloss", "calibration", "psi", "matched_rows", "unmatched_score_rows", "unmatched_label_rows",
           "unmatched_rate", "positive_rate", "mean_score")


class ThresholdBreached(CheckFailed):
    """A --fail-on rule was broken; the outputs are written."""

    exit_code = EXIT_THRESHOLD


@dataclasses.dataclass(frozen=True)
class Rule:
    metric: str
    op: str
    threshold: float

    def broken(self, value) -> bool:
        return value is not None and not (isinstance(value, float) and np.isnan(value)) and \
            _OPS[self.op](value, self.threshold)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.threshold:g}"


def parse_rules(spec: str | None) -> list[Rule]:
    """'auc<0.7,psi>0.2' -> rules; one clear error for a malformed one."""
    rules = []
    for part in (p.strip() for p in (spec or "").split(",") if p.strip()):
        op = next((o for o in _OPS if o in part), None)
        metric, _, value = part.partition(op) if op else (part, "", "")
        if op is None or metric.strip() not in METRICS:
            raise OptionsError(f"--fail-on {part!r}: expected METRIC<VALUE or METRIC>VALUE with METRIC one of "
                             f"{', '.join(METRICS)}")
        try:
            rules.append(Rule(metric.strip(), op, float(value)))
        except ValueError:
            raise OptionsError(f"--fail-on {part!r}: {value!r} is not a number") from None
    return rules


@dataclasses.dataclass(frozen=True, kw_only=True)
class MonitorOptions:
    """``ctrflow monitor``: which scored dates, which labels, where the report goes, when to fail."""

    scores: str = option(help="the --output folder of `ctrflow score` (holds date=D/)")
    labels: tuple[str, ...] = option(help="label file pattern (CSV with header, or Parquet); '{date}' is replaced")
    date: str = option(help="YYYY-MM-DD or FIRST:LAST")
    output: str = option(help="monitor folder (per-date metrics, monitor.json, index.html)")
    model: str | None = option(None, help="model directory (default: the one named in each scored partition's "
                                          "manifest)")
    fail_on: str | None = option(None, metavar="RULES",
                                 help="comma-separated rules, e.g. 'auc<0.7,psi>0.2,unmatched_rate>0.05'; a broken "
                                      f"rule exits with status {EXIT_THRESHOLD} after writing everything")

    def __post_init__(self) -> None:
        parse_dates(self.date)
        parse_rules(self.fail_on)

    @property
    def rules(self) -> list[Rule]:
        return parse_rules(self.fail_on)

    def to_dict(self) -> dict:
        return to_dict(self)


def build_arg_parser() -> FlagParser:
    return build_parser(MonitorOptions, "ctrflow monitor", __doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)


def _read_table(path: str) -> pa.Table:
    with FileSystems.open(path) as f:
        data = f.read()
    if path.endswith(".parquet"):
        return pq.read_table(pa.BufferReader(data))
    return pacsv.read_csv(pa.BufferReader(data), convert_options=pacsv.ConvertOptions(strings_can_be_null=False))


def read_scores(partition_dir: str) -> pd.DataFrame:
    files = [f for f, _ in match_files([os.path.join(partition_dir, "part-*")])]
    if not files:
        raise UserError(f"--scores: no part-* files in {partition_dir}; was the date scored "
                                "(to files, not --output-table)?")
    return pa.concat_tables([_read_table(f) for f in sorted(files)]).to_pandas()


def read_labels(patterns: list[str], keys: list[str], label: str, positive, negative) -> tuple[pd.DataFrame, int]:
    """(id columns + 0/1 label, rows whose label is neither positive nor negative)."""
    files = [f for f, _ in match_files(patterns)]
    if not files:
        raise UserError(f"--labels: no file matches {', '.join(patterns)}")
    frames = []
    for f in sorted(files):
        table = _read_table(f)
        for col in keys + [label]:
            if col not in table.column_names:
                raise UserError(f"--labels {f}: column {col!r} is missing (has {', '.join(table.column_names)})")
        frames.append(table.select(keys + [label]).to_pandas())
    df = pd.concat(frames, ignore_index=True)
    text = df[label].astype(str).str.strip()
    pos = text.isin([str(v) for v in positive])
    neg = text.isin([str(v) for v in negative]) if negative else ~pos  # no negative list: anything else
    out = df.loc[pos | neg, keys].copy()
    out["__label__"] = pos[pos | neg].astype(np.float64).to_numpy()
    return out, int((~(pos | neg)).sum())


def date_metrics(scores: pd.DataFrame, labels: pd.DataFrame, keys: list[str], reference: dict | None,
                 invalid_labels: int) -> dict:
    """Join by id and compute the day's figures."""
    duplicates = int(labels.duplicated(keys).sum())
    labels = labels.drop_duplicates(keys, keep="first")
    for k in keys:  # ids may come as text from CSV labels and as int64 from the scores
        if scores[k].dtype != labels[k].dtype:
            labels[k] = labels[k].astype(scores[k].dtype)
    joined = scores.merge(labels, on=keys, how="inner")
    y, p = joined["__label__"].to_numpy(np.float64), joined["score"].to_numpy(np.float64)
    out = {"scored_rows": len(scores), "label_rows": len(labels) + duplicates,
           "matched_rows": len(joined), "unmatched_score_rows": int(len(scores) - len(joined)),
           "unmatched_label_rows": int(len(labels) - len(joined)), "duplicate_label_ids": duplicates,
           "invalid_label_rows": invalid_labels,
           "unmatched_rate": float(1 - len(joined) / len(scores)) if len(scores) else None,
           "mean_score": float(scores["score"].mean()) if len(scores) else None}
    if len(joined) and 0 < y.sum() < len(y):
        s = mt.summary(y, p)
        out.update(auc=s["auc"], logloss=s["logloss"], calibration=s["calibration"], positive_rate=float(y.mean()))
    if reference is not None and reference.get("edges") is not None:
        all_scores = scores["score"].to_numpy(np.float64)
        out["psi"] = score_profile.score_psi(reference, score_profile.counts(all_scores, reference["edges"]))
    return out


def run(argv: list[str] | None = None) -> dict:
    """Parses the flags and monitors every date."""
    return run_job(from_namespace(MonitorOptions, build_arg_parser().parse_args(argv)))


def run_job(args: MonitorOptions) -> dict:
    """Monitors every date; returns {date: metrics} (also in OUTPUT/monitor.json)."""
    setup_logging()
    rules = args.rules
    output = args.output.rstrip("/")
    trend_path = os.path.join(output, MONITOR_FILE)
    trend = mf.read_json(trend_path)["dates"] if FileSystems.exists(trend_path) else {}
    for date in parse_dates(args.date):
        part = live_dir(partition.partition_dir(args.scores.rstrip("/"), date))  # the published version
        manifest_path = os.path.join(part, "manifest.json")
        model = args.model or (mf.read_json(manifest_path)["model"] if FileSystems.exists(manifest_path) else None)
        if model is None:
            raise UserError(f"--scores: {manifest_path} is missing; give --model MODEL_DIR")
        meta = load_metadata(model)
        keys = [c.name for c in meta.schema.keys if c.role == "id"] or [c.name for c in meta.schema.keys]
        label = meta.schema.label
        if not keys or label is None:
            raise UserError(f"{meta.path}: the schema needs an id column and a label to join scores with labels")
        scores = read_scores(part)
        labels, invalid = read_labels([x.replace("{date}", date) for x in args.labels], keys, label.name,
                                      label.positive_values, label.negative_values)
        doc = {"date": date, "model_version": meta.version,
               **date_metrics(scores, labels, keys, meta.info.get("eval_score_profile"), invalid)}
        mf.write_json(os.path.join(output, f"date={date}", "metrics.json"), doc)
        trend[date] = doc
        logging.info("[%s] %d matched, AUC %s, calibration %s, score PSI %s", date, doc["matched_rows"],
                     _fmt(doc.get("auc")), _fmt(doc.get("calibration")), _fmt(doc.get("psi")))
    mf.write_json(trend_path, {"dates": dict(sorted(trend.items()))})
    page = write_trend_page(output, dict(sorted(trend.items())), [str(r) for r in rules])
    print(f"monitor: {len(trend)} date(s) in {page}", flush=True)
    broken = [f"{d}: {r.metric}={trend[d].get(r.metric):.4g} breaks {r}" for d in parse_dates(args.date)
              for r in rules if r.broken(trend[d].get(r.metric))]
    if broken:
        message = "; ".join(broken)
        logging.error("monitor thresholds broken: %s", message)
        raise ThresholdBreached(message)
    return trend


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"

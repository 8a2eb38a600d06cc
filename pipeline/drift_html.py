"""``drift.html``: the drift report (``pipeline.drift``) as one self-contained page.

The page has a summary table (every feature with its PSI, OOV, missing and
out-of-range rates, today against training, the drifted ones first and in
red) and one small chart per feature (inline SVG): the share of rows in each bucket /
vocabulary id / hash id at training time and on the scoring day. Vocabulary
ids are shown as their tokens, read from the vocabulary files the export
carries in ``assets/``. Features with many ids show the ids with the largest
share (in either period) and one "other" bar. The charts are inline SVG, so
the page needs no other file, no script and no network.
"""
from __future__ import annotations

import html
import math
import os
from typing import Any, Mapping

from apache_beam.io.filesystems import FileSystems

from ctrflow.pipeline import artifacts as af
from ctrflow.pipeline.layout import FeatureLayout
from ctrflow.schemas.types import Schema

MAX_BARS = 16
_TRAIN_COLOR, _DAY_COLOR = "#8da0b8", "#d9822b"


def load_vocabularies(export_dir: str, names: list[str]) -> dict[str, list[str]]:
    """Tokens by id of each named vocabulary feature (``assets/vocab_<name>``), where present."""
    from ctrflow.pipeline.layout import vocab_name

    out: dict[str, list[str]] = {}
    for name in names:
        path = os.path.join(export_dir, af.SAVED_MODEL_ASSETS, vocab_name(name))
        if not FileSystems.exists(path):
            continue
        with FileSystems.open(path) as f:
            out[name] = f.read().decode("utf-8", "replace").splitlines()
    return out


def _fmt_rate(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _fmt_psi(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def chart_bars(entry: Mapping[str, Any], kind: str, tokens: list[str] | None = None,
               vocab_size: int | None = None, max_bars: int = MAX_BARS) -> tuple[list[str], list[float], list[float]]:
    """(labels, training shares, day shares) of one feature's chart."""
    train = {int(k): v for k, v in entry.get("histogram_train", {}).items()}
    day = {int(k): v for k, v in entry.get("histogram_current", {}).items()}
    nt, nd = sum(train.values()) or 1, sum(day.values()) or 1
    ids = sorted(set(train) | set(day))
    share = {i: max(train.get(i, 0) / nt, day.get(i, 0) / nd) for i in ids}
    keep = ids
    if len(ids) > max_bars:
        top = set(sorted(ids, key=lambda i: -share[i])[:max_bars - 1])
        keep = [i for i in ids if i in top]
    labels = []
    for i in keep:
        if kind == "vocabulary":
            if vocab_size is not None and i >= vocab_size:
                labels.append("(OOV)" if i == vocab_size else f"(OOV {i - vocab_size})")
            elif tokens is not None and i < len(tokens):
                labels.append(tokens[i] if len(tokens[i]) <= 18 else tokens[i][:17] + "…")
            else:
                labels.append(f"id {i}")
        elif kind == "bucket":
            labels.append(f"b{i}")
        else:
            labels.append(f"#{i}")
    p = [train.get(i, 0) / nt for i in keep]
    q = [day.get(i, 0) / nd for i in keep]
    if len(keep) < len(ids):
        rest = len(ids) - len(keep)
        labels.append(f"other ({rest} ids)")
        p.append(max(0.0, 1 - sum(p)))
        q.append(max(0.0, 1 - sum(q)))
    return labels, p, q


def _nice_step(top: float) -> float:
    """A round gridline step giving 2-5 lines up to ``top`` (a share in 0..1)."""
    for step in (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5):
        if top / step <= 5:
            return step
    return 0.5


def render_chart(title: str, labels: list[str], train: list[float], day: list[float], drifted: bool) -> str:
    """A small grouped bar chart (training vs scoring day) as inline SVG markup.

    Hand-written SVG rather than matplotlib: a page of 40 charts renders in
    milliseconds inside the scoring job instead of seconds.
    """
    n = max(len(labels), 1)
    slot = max(26.0, 300.0 / n)
    left, right, top = 46, 12, 30
    longest = max((len(s) for s in labels), default=1)
    bottom = 18 + int(min(longest, 22) * 4.6)
    plot_w = int(slot * n)
    width, height = left + plot_w + right, top + 120 + bottom
    plot_h = 120
    vmax = max([*train, *day, 0.01])
    step = _nice_step(vmax)
    ymax = step * math.ceil(vmax / step - 1e-9)
    def y(v: float) -> float:
        return top + plot_h - plot_h * v / ymax

    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
           f"viewBox='0 0 {width} {height}' font-family='Helvetica, Arial, sans-serif' font-size='10'>"]
    color = "#b00020" if drifted else "#222"
    out.append(f"<text x='4' y='14' font-size='12' font-weight='600' fill='{color}'>{html.escape(title)}</text>")
    lx = width - right - 150
    out.append(f"<rect x='{lx}' y='5' width='10' height='10' fill='{_TRAIN_COLOR}'/>"
               f"<text x='{lx + 14}' y='14'>training</text>"
               f"<rect x='{lx + 70}' y='5' width='10' height='10' fill='{_DAY_COLOR}'/>"
               f"<text x='{lx + 84}' y='14'>scoring day</text>")
    k = 0
    while k * step <= ymax + 1e-9:
        gy = y(k * step)
        out.append(f"<line x1='{left}' x2='{left + plot_w}' y1='{gy:.1f}' y2='{gy:.1f}' stroke='#e6e6e6'/>"
                   f"<text x='{left - 4}' y='{gy + 3:.1f}' text-anchor='end' fill='#555'>{100 * k * step:.0f}%</text>")
        k += 1
    bw = slot * 0.38
    for i, (label, p, q) in enumerate(zip(labels, train, day)):
        x0 = left + i * slot + slot / 2
        for x, v, c, who in ((x0 - bw, p, _TRAIN_COLOR, "training"), (x0, q, _DAY_COLOR, "scoring day")):
            out.append(f"<rect x='{x:.1f}' y='{y(v):.1f}' width='{bw:.1f}' height='{top + plot_h - y(v):.1f}' "
                       f"fill='{c}'><title>{html.escape(label)}, {who}: {100 * v:.2f}%</title></rect>")
        ty = top + plot_h + 10
        out.append(f"<text x='{x0:.1f}' y='{ty}' text-anchor='end' fill='#333' "
                   f"transform='rotate(-55 {x0:.1f} {ty})'>{html.escape(label)}</text>")
    out.append(f"<line x1='{left}' x2='{left + plot_w}' y1='{top + plot_h}' y2='{top + plot_h}' stroke='#888'/>")
    out.append("</svg>")
    return "".join(out)


def _feature_kind(column) -> str:
    if column.role == "numeric":
        return "bucket"
    if column.categorical is not None and column.categorical.vocabulary is not None:
        return "vocabulary"
    return "hash"


_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 24px; color: #222;
       max-width: 1100px; }
h1 { font-size: 20px; margin-bottom: 4px; } h2 { font-size: 16px; margin-top: 28px; }
.meta { color: #555; font-size: 13px; }
.alert { background: #fdecea; border-left: 4px solid #b00020; padding: 8px 12px; margin: 12px 0; font-size: 14px; }
.ok { background: #e8f5e9; border-left: 4px solid #2e7d32; padding: 8px 12px; margin: 12px 0; font-size: 14px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e0e0e0; text-align: right; }
th { background: #f5f5f5; } td:first-child, th:first-child, td:nth-child(2) { text-align: left; }
tr.drift td { color: #b00020; font-weight: 600; }
.charts { display: flex; flex-wrap: wrap; gap: 10px; }
.chart { border: 1px solid #e0e0e0; padding: 6px; }
.chart.drift { border-color: #b00020; }
.chart p { margin: 2px 0 0 0; font-size: 12px; color: #555; }
"""


def render_html(report: Mapping[str, Any], schema, layout, *, date: str, model_version: str,
                vocabularies: Mapping[str, list[str]] | None = None) -> str:
    """The page for one day's drift report."""
    vocabularies = vocabularies or {}
    num_ids = {f.name: f.num_ids for f in layout.sparse}
    threshold = report["psi_threshold"]
    over = list(report["features_over_threshold"])
    features = report["features"]

    def psi_key(name):
        v = features[name].get("psi")
        return -1.0 if v is None or math.isnan(v) else v

    order = over + sorted((n for n in features if n not in over), key=lambda n: -psi_key(n))
    rows, charts = [], []
    for name in order:
        e = features[name]
        column = schema.column(name)
        drifted = name in over
        oor = e.get("out_of_range_rate")
        rows.append(
            f"<tr class='{'drift' if drifted else ''}'><td><a href='#f-{html.escape(name)}'>{html.escape(name)}</a>"
            f"</td><td>{html.escape(e['role'])}</td><td>{_fmt_psi(e.get('psi'))}</td>"
            f"<td>{_fmt_rate(e.get('oov_rate_train')) if 'oov_rate' in e else '-'}</td>"
            f"<td>{_fmt_rate(e.get('oov_rate')) if 'oov_rate' in e else '-'}</td>"
            f"<td>{_fmt_rate(e.get('missing_rate_train'))}</td><td>{_fmt_rate(e.get('missing_rate'))}</td>"
            f"<td>{_fmt_rate(oor) if e['role'] == 'numeric' else '-'}</td></tr>")
        if "histogram_train" not in e:
            continue
        kind = _feature_kind(column)
        vocab_size = None
        if kind == "vocabulary" and name in num_ids:
            vocab_size = num_ids[name] - column.categorical.vocabulary.num_oov_buckets
        labels, p, q = chart_bars(e, kind, vocabularies.get(name), vocab_size)
        title = f"{name}  PSI {_fmt_psi(e.get('psi'))}" + ("  > threshold" if drifted else "")
        svg = render_chart(title, labels, p, q, drifted)
        notes = [f"missing {_fmt_rate(e.get('missing_rate_train'))} → {_fmt_rate(e.get('missing_rate'))}"]
        if "oov_rate" in e:
            notes.append(f"OOV {_fmt_rate(e.get('oov_rate_train'))} → {_fmt_rate(e.get('oov_rate'))}")
        if e["role"] == "numeric" and e.get("train_range"):
            lo, hi = e["train_range"]
            notes.append(f"outside training range [{lo:g}, {hi:g}]: {_fmt_rate(oor)}")
        what = {"bucket": "quantile buckets", "vocabulary": "vocabulary tokens", "hash": "hash buckets"}[kind]
        charts.append(
            f"<div class='chart {'drift' if drifted else ''}' id='f-{html.escape(name)}'>"
            f"{svg}"
            f"<p>{what}; {'; '.join(html.escape(n) for n in notes)}</p></div>")
    if over:
        banner = (f"<div class='alert'><b>{len(over)} feature(s) drifted</b> over PSI {threshold:g}: "
                  + ", ".join(f"{html.escape(n)} ({_fmt_psi(features[n]['psi'])})" for n in over) + "</div>")
    else:
        banner = f"<div class='ok'>No feature drifted over PSI {threshold:g}.</div>"
    header = ("<tr><th>feature</th><th>role</th><th>PSI</th><th>OOV train</th><th>OOV day</th>"
              "<th>missing train</th><th>missing day</th><th>outside train range</th></tr>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ctrflow drift report {html.escape(date)}</title>
<style>{_CSS}</style></head><body>
<h1>Upstream drift, {html.escape(date)}</h1>
<div class="meta">model {html.escape(model_version)} · {report['rows']:,} rows scored · training baseline
{report['train_rows']:,} rows · PSI reading: &lt; 0.1 stable, 0.1–0.2 moderate, &gt; 0.2 significant</div>
{banner}
<h2>Features</h2>
<table>{header}{''.join(rows)}</table>
<h2>Distributions: training vs scoring day</h2>
<div class="charts">{''.join(charts)}</div>
</body></html>
"""


def write_drift_html(path: str, report: Mapping[str, Any], schema: Schema, layout: FeatureLayout, *,
                     model_version: str, export_dir: str, date: str) -> None:
    """Writes the page for ``report`` of the model exported to ``export_dir`` (its vocabularies) to ``path``."""
    vocab_features = [c.name for c in schema.features
                      if c.role == "categorical" and c.categorical.vocabulary is not None]
    page = render_html(report, schema, layout, date=date, model_version=model_version,
                       vocabularies=load_vocabularies(export_dir, vocab_features))
    with FileSystems.create(path) as f:
        f.write(page.encode("utf-8"))

"""The monitor's trend page: one PNG chart per figure over the dates, and a table.

Plain HTML next to the PNGs (no JavaScript, no network), so it opens from a
bucket or a laptop alike; ``ctrflow monitor`` rewrites it every day.
"""
from __future__ import annotations

import html
import io
import os

from apache_beam.io.filesystems import FileSystems

from ctrflow.pipeline import artifacts as af

CHARTS = (
    ("auc", "AUC", None),
    ("logloss", "log loss", None),
    ("calibration", "calibration (mean score / positive rate)", 1.0),
    ("psi", "score PSI vs the model's eval scores", 0.2),
    ("matched_rows", "rows matched with a label", None),
    ("unmatched_rate", "share of scores without a label", None),
)
COLUMNS = ("model_version", "matched_rows", "unmatched_score_rows", "unmatched_label_rows", "invalid_label_rows",
           "auc", "logloss", "calibration", "positive_rate", "mean_score", "psi")


def _chart(dates: list[str], values: list, title: str, reference: float | None) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.6))
    xs = [i for i, v in enumerate(values) if v is not None]
    ax.plot(xs, [values[i] for i in xs], "o-")
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(dates)))
    ax.set_xticklabels(dates, rotation=45, ha="right", fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    buf = io.BytesIO()  # matplotlib writes local files only; the page may live on gs://
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return html.escape("" if v is None else str(v))


def write_trend_page(output: str, trend: dict[str, dict], rules: list[str], extra_html: str = "") -> str:
    """Writes OUTPUT/index.html and its charts (local or gs://); returns the page path.

    ``extra_html``: a fragment after the per-date table (the last date's slices, ``pipeline.slice_report``).
    """
    dates = list(trend)
    parts = ["<html><head><meta charset='utf-8'><title>ctrflow monitor</title></head><body>",
             f"<h1>ctrflow monitor: {len(dates)} date(s)</h1>",
             f"<p>Thresholds: {html.escape(', '.join(rules) or 'none')}</p>"]
    for key, title, reference in CHARTS:
        values = [trend[d].get(key) for d in dates]
        if all(v is None for v in values):
            continue
        with FileSystems.create(os.path.join(output, f"{key}.png")) as f:
            f.write(_chart(dates, values, title, reference))
        parts.append(f"<h3>{html.escape(title)}</h3><img src='{key}.png' alt='{key}'>")
    parts.append("<h2>Per date</h2><table border='1' cellpadding='3'><tr><th>date</th>"
                 + "".join(f"<th>{c}</th>" for c in COLUMNS) + "</tr>")
    for d in dates:
        parts.append(f"<tr><td>{d}</td>" + "".join(f"<td>{_cell(trend[d].get(c))}</td>" for c in COLUMNS) + "</tr>")
    parts.append("</table>")
    if extra_html:
        parts.append(extra_html)
    parts.append("</body></html>")
    page = os.path.join(output, af.MONITOR_HTML)
    with FileSystems.create(page) as f:
        f.write("\n".join(parts).encode())
    return page

"""The slices table of the evaluate and monitor pages: one HTML table per slice column, worst slice first.

Takes the document ``model.slices.slice_metrics`` writes (already sorted worst
first); plain HTML, no JavaScript, like the pages it goes into.
"""
from __future__ import annotations

import html

COLUMNS = (("value", "value"), ("rows", "rows"), ("auc", "AUC"), ("auc_ci", "AUC 95% CI"),
           ("logloss", "log loss"), ("calibration", "calibration"), ("mean_score", "mean score"),
           ("positive_rate", "positive rate"), ("note", "note"))


def _cell(s: dict, key: str) -> str:
    if key == "auc_ci":
        lo, hi = s.get("auc_ci_low"), s.get("auc_ci_high")
        return "" if lo is None else f"[{lo:.4f}, {hi:.4f}]"
    v = s.get(key)
    if isinstance(v, float):
        return f"{v:.4f}"
    return html.escape("" if v is None else str(v))


def slices_html(doc: dict | None, title: str = "Metrics by slice") -> str:
    """An HTML fragment (empty without slices)."""
    if not doc or not doc.get("columns"):
        return ""
    parts = [f"<h2>{html.escape(title)}</h2>",
             f"<p>Worst slice first. Top {doc['top']} values by rows, the rest as (other); no AUC under "
             f"{doc['min_rows']} rows. AUC interval: {html.escape(doc['method'])}.</p>"]
    for col, d in doc["columns"].items():
        parts.append(f"<h3>{html.escape(col)}</h3>")
        if d.get("note"):
            parts.append(f"<p>{html.escape(d['note'])}</p>")
        parts.append("<table border='1' cellpadding='3'><tr>" + "".join(f"<th>{t}</th>" for _, t in COLUMNS)
                     + "</tr>")
        for s in d["slices"]:
            parts.append("<tr>" + "".join(f"<td>{_cell(s, k)}</td>" for k, _ in COLUMNS) + "</tr>")
        parts.append("</table>")
    return "\n".join(parts)

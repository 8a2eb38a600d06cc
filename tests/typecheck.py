"""``make typecheck``: pyright over the package; fails on any error and on every ``ctrflow`` import it cannot resolve.

``[tool.pyright]`` in pyproject.toml makes unresolved imports errors and unknown imported names warnings,
and leaves type checking off: basic mode reports 330 errors today, most of them argument types and
Optional accesses, many through TensorFlow's, Beam's and pyarrow's partial stubs. Whatever that config
says, this script fails when a diagnostic sits on a ``ctrflow`` import: a renamed module or name, or an
editable install that static tools cannot follow.

    .venv/bin/python tests/typecheck.py [paths...]    # default: the package folders of [tool.pyright]
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_pyright(paths: list[str] | None = None) -> dict:
    """pyright's JSON report (``--outputjson``), run from the repo root so pyproject.toml's config applies."""
    out = subprocess.run([sys.executable, "-m", "pyright", "--outputjson", *(paths or [])], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    try:
        return json.loads(out.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"pyright gave no report (exit {out.returncode}): {out.stdout[-2000:]}{out.stderr[-2000:]}")


def _ctrflow_import_lines(path: str) -> set[int]:
    """1-based lines covered by ``import ctrflow...`` / ``from ctrflow... import`` statements of one file."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        if any(n == "ctrflow" or n.startswith("ctrflow.") for n in names):
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


def unresolved_ctrflow_imports(diagnostics: list[dict]) -> list[dict]:
    """The diagnostics (any rule, any severity but information) that sit on a ``ctrflow`` import statement."""
    found, lines = [], {}
    for d in diagnostics:
        if d.get("severity") == "information" or "range" not in d:
            continue
        if d["file"] not in lines:
            lines[d["file"]] = _ctrflow_import_lines(d["file"])
        if d["range"]["start"]["line"] + 1 in lines[d["file"]] or '"ctrflow' in d.get("message", ""):
            found.append(d)
    return found


def _where(d: dict) -> str:
    return (f"{os.path.relpath(d['file'], ROOT)}:{d['range']['start']['line'] + 1}: {d['severity']}: "
            f"{d['message']} ({d.get('rule', '')})")


def main(argv: list[str]) -> int:
    report = run_pyright(argv)
    diagnostics = report.get("generalDiagnostics", [])
    errors = [d for d in diagnostics if d.get("severity") == "error"]
    ctrflow = unresolved_ctrflow_imports(diagnostics)
    for d in sorted({id(d): d for d in errors + ctrflow}.values(), key=_where):
        print(_where(d))
    summary = report.get("summary", {})
    print(f"typecheck: {summary.get('filesAnalyzed', '?')} files, {len(errors)} errors, "
          f"{len(ctrflow)} unresolved ctrflow imports, {summary.get('warningCount', 0)} warnings (not gated)")
    return 1 if errors or ctrflow else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Every artifact file and folder name is written once, in ``pipeline.artifacts``.

The check reads the package's sources (ast string constants, docstrings
excluded) for the names that module defines, so a name added there is
guarded from then on:

- a name with a dot, ``=`` or a leading ``_`` (``metrics.json``, ``date=``,
  ``_LATEST``) may not be quoted anywhere else, alone or as a component of a
  quoted path (``"transform_fn/saved_model.pb"``);
- a plain word (``export``, ``members``, ``rejected``) is also an ordinary
  word or a Beam tag, so it is flagged where it builds a path: an argument of
  a ``join`` call, or a component of a quoted path.

A text with spaces (a help text, a message) is prose, not a path: it may name
a file, as the docstrings do.
"""
from __future__ import annotations

import ast
import pathlib
import re

from ctrflow.pipeline import artifacts as af

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("common", "schemas", "pipeline", "model", "beam_jobs", "cli")
NAMES_MODULE = ROOT / "pipeline" / "artifacts.py"


def artifact_names() -> dict[str, str]:
    """{value: its constant's name} of every upper-case string constant of ``pipeline.artifacts``.

    One file name may have two constants (``index.html`` is the monitor's page
    and evaluate's): "EVALUATION_HTML or MONITOR_HTML".
    """
    names: dict[str, list[str]] = {}
    for k, v in vars(af).items():
        if k.isupper() and isinstance(v, str):
            names.setdefault(v, []).append(k)
    return {v: " or ".join(sorted(ks)) for v, ks in names.items()}


def _is_word(name: str) -> bool:
    return re.fullmatch(r"[a-z]+", name) is not None


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def _join_args(tree: ast.AST) -> set[int]:
    """ids of the constants passed to a path ``join`` (``os.path.join``, ``af.join``; not ``",".join``)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
            if name == "join" and not (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Constant)):
                out.update(id(a) for a in node.args if isinstance(a, ast.Constant))
    return out


def quoted_names(source: str, names: dict[str, str]) -> list[tuple[int, str]]:
    """(line, name) of every artifact name quoted in ``source`` (see the module docstring)."""
    tree = ast.parse(source)
    skip, joined = _docstrings(tree), _join_args(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) or id(node) in skip:
            continue
        text = node.value
        parts = set(text.split("/")) if "/" in text and not re.search(r"\s", text) else set()
        for name in names:
            if name in parts or (text == name and (not _is_word(name) or id(node) in joined)):
                found.append((node.lineno, name))
    return found


def test_the_check_finds_quoted_names() -> None:
    """The check can fail: each way of quoting a name is found, ordinary words are not."""
    names = artifact_names()
    source = '''
import os
a = os.path.join(out, "metrics.json")
b = os.path.join(out, "export", "saved_model.pb")
c = f"date={day}"
d = "transform_fn/assets"
e = getattr(model, "members", None)
f = ",".join(["export", "x"])
g = "rows were rejected"
h = "member k writes under MODEL_DIR/members/k"
'''
    assert sorted(quoted_names(source, names)) == [(3, "metrics.json"), (4, "export"), (4, "saved_model.pb"),
                                                   (5, "date="), (6, "assets"), (6, "transform_fn"),
                                                   (6, "transform_fn/assets")]


def test_no_artifact_name_is_quoted_outside_the_names_module() -> None:
    names = artifact_names()
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == NAMES_MODULE:
                continue
            for line, name in quoted_names(path.read_text(encoding="utf-8"), names):
                found.append(f"{path.relative_to(ROOT)}:{line}: {name!r} (use pipeline.artifacts.{names[name]})")
    assert found == []

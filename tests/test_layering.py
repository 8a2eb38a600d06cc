"""Layers import downward only: common <- schemas <- pipeline <- model <- beam_jobs <- cli.

Every import statement (at module level or inside a function) of every module
in the package folders is read with ``ast``, so a lazy upward import inside a
function fails this test as surely as one at the top.
"""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = {"common": 0, "schemas": 1, "pipeline": 2, "model": 3, "beam_jobs": 4, "cli": 5}
GENERIC_NAMES = tuple(LAYERS)  # not ours when imported bare


def _modules():
    for folder in LAYERS:
        for here, dirs, files in sorted(os.walk(os.path.join(ROOT, folder))):
            dirs.sort()
            for name in sorted(files):
                if name.endswith(".py"):
                    yield folder, os.path.relpath(os.path.join(here, name), ROOT)


def _imported(path: str) -> list[tuple[int, str]]:
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import; write from ctrflow.<layer> ..."
            base = node.module or ""
            found += [(node.lineno, f"{base}.{a.name}" if base == "ctrflow" else base) for a in node.names]
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "ctrflow":
        return None
    assert len(parts) > 1 and parts[1] in LAYERS, f"{module}: ctrflow has no layer {parts[1:2]}"
    return parts[1]


@pytest.mark.parametrize("folder,path", list(_modules()), ids=lambda v: v if v.endswith(".py") else "")
def test_imports_go_downward_only(folder, path):
    for line, module in _imported(path):
        assert module.split(".")[0] not in GENERIC_NAMES, f"{path}:{line}: import {module}; use ctrflow.{module}"
        target = _layer(module)
        if target is not None:
            assert LAYERS[target] <= LAYERS[folder], (
                f"{path}:{line} imports {module}: {folder} may import only "
                f"{[k for k, v in LAYERS.items() if v <= LAYERS[folder]]}")


def test_the_layer_check_sees_imports_inside_functions(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from ctrflow.beam_jobs.runners import x\n")
    assert _imported(str(src)) == [(2, "ctrflow.beam_jobs.runners")]

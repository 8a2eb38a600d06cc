"""Layers import downward only: schemas <- pipeline <- model <- beam_jobs <- ctrflow (CLI).

Every import statement (at module level or inside a function) of every module
in the package folders is read with ``ast``, so a lazy upward import inside a
function fails this test as surely as one at the top.
"""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = {"schemas": 0, "pipeline": 1, "model": 2, "beam_jobs": 3, "ctrflow": 4}
GENERIC_NAMES = ("model", "pipeline", "schemas", "beam_jobs")  # not ours when imported bare


def _modules():
    for folder in LAYERS:
        for name in sorted(os.listdir(os.path.join(ROOT, folder))):
            if name.endswith(".py"):
                yield folder, os.path.join(folder, name)


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
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "ctrflow"


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
    src.write_text("def f():\n    from ctrflow.beam_jobs.options import x\n")
    assert _imported(str(src)) == [(2, "ctrflow.beam_jobs.options")]

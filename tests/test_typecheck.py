"""The import gate of ``make typecheck`` (tests/typecheck.py) on a small file: it resolves ``ctrflow.model``
through the editable install as pyright sees it (a path-based resolver, no import hooks), and fails on a
module or a name that does not exist. The whole package is checked by ``make typecheck`` in CI."""
import importlib.util
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import typecheck  # noqa: E402

pytestmark = pytest.mark.skipif(importlib.util.find_spec("pyright") is None, reason="pyright not installed")


def test_pyright_resolves_ctrflow_and_the_gate_fails_on_a_bad_ctrflow_import(tmp_path):
    src = tmp_path / "imports.py"
    src.write_text("import ctrflow.model.config as good\n"
                   "from ctrflow.model import models\n"
                   "import ctrflow.model.no_such_module\n"
                   "from ctrflow.pipeline.layout import (\n"
                   "    FeatureLayout,\n"
                   "    no_such_name,\n"
                   ")\n"
                   "import json\n"
                   "json.no_such_function()\n"
                   "reveal_type(good)\n"
                   "reveal_type(models)\n")
    diagnostics = typecheck.run_pyright([str(src)])["generalDiagnostics"]
    revealed = [d["message"] for d in diagnostics if d["severity"] == "information"]
    assert revealed == ['Type of "good" is "Module("ctrflow.model.config")"',
                       'Type of "models" is "Module("ctrflow.model.models")"']
    bad = typecheck.unresolved_ctrflow_imports(diagnostics)
    assert sorted((d["range"]["start"]["line"] + 1, d["message"]) for d in bad) == [
        (3, 'Import "ctrflow.model.no_such_module" could not be resolved'),
        (6, '"no_such_name" is unknown import symbol')]
    assert typecheck.main([str(src)]) == 1

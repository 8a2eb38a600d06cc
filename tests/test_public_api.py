"""Each layer's ``__init__`` gives its public API in ``__all__``: every name resolves, to the object its
``TYPE_CHECKING`` block (what static tools read) names, and importing the packages loads no heavy library."""
import ast
import importlib
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ["common", "schemas", "pipeline", "model", "beam_jobs", "beam_jobs/input", "beam_jobs/preprocess",
            "beam_jobs/scoring", "beam_jobs/outputs", "cli"]
HEAVY = ("tensorflow", "keras", "tf_keras", "tensorflow_transform", "apache_beam", "pyarrow", "pandas")


def _package(folder: str) -> str:
    return "ctrflow." + folder.replace("/", ".")


def _declared(folder: str) -> dict[str, tuple[str, str | None]]:
    """name -> (module, attribute or None for a submodule) from the ``__init__``'s ``if TYPE_CHECKING:`` imports."""
    with open(os.path.join(ROOT, folder, "__init__.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom), f"{folder}/__init__.py:{imp.lineno}: only from-imports"
                for alias in imp.names:
                    submodule = imp.module == _package(folder)
                    found[alias.asname or alias.name] = ((f"{imp.module}.{alias.name}", None) if submodule
                                                         else (imp.module, alias.name))
    return found


@pytest.mark.parametrize("folder", PACKAGES)
def test_every_name_in_all_resolves_to_what_static_tools_see(folder):
    package = importlib.import_module(_package(folder))
    names = package.__all__
    assert names and len(set(names)) == len(names), f"{folder}: empty __all__ or a name twice"
    declared = _declared(folder)
    for name in names:
        value = getattr(package, name)  # raises AttributeError if a lazy export points nowhere
        assert name in dir(package)
        if name in declared:
            module, attribute = declared[name]
            expected = importlib.import_module(module)
            if attribute is not None:
                expected = getattr(expected, attribute)
            assert value is expected, f"{folder}: {name} is not {module}.{attribute or ''}"
        else:  # defined or imported in the __init__ itself
            assert name in vars(package), f"{folder}: {name} is in __all__ but neither defined nor declared"
    assert not set(declared) - set(names), f"{folder}: declared for static tools but not in __all__"


def test_an_unknown_name_is_an_attribute_error_so_submodule_imports_still_work():
    import ctrflow.beam_jobs.preprocess as preprocess_package

    assert not hasattr(preprocess_package, "no_such_name")
    from ctrflow.beam_jobs.preprocess import daily  # a submodule not in __all__

    assert daily.__name__ == "ctrflow.beam_jobs.preprocess.daily"


def test_importing_the_packages_loads_no_heavy_library():
    code = ("import sys\n" + "".join(f"import {_package(f)}\n" for f in PACKAGES)
            + f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout

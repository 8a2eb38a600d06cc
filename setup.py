"""ctrflow: schema-driven feature pipeline, trainer and batch scorer for CTR models.

Installed, ctrflow claims exactly one import name, ``ctrflow``, a namespace package whose
subpackages are the repository's top-level folders (``package_dir``), lowest layer first:

    common/     -> ctrflow.common     (errors, flags, logging, artifact names, library compat)
    schemas/    -> ctrflow.schemas    (schema types and loader, bundled *.yaml)
    pipeline/   -> ctrflow.pipeline   (parsing, tf.Transform logic, stats)
    model/      -> ctrflow.model      (Keras layers, models, trainer, export)
    beam_jobs/  -> ctrflow.beam_jobs  (Beam wiring: input, preprocess, scoring, outputs)
    cli/        -> ctrflow.cli        (the ``ctrflow`` command, demo, monitor)
    data/       -> ctrflow.data       (the bundled census demo data, package data)

No folder at the root is named ``ctrflow``, so nothing in a checkout shadows the installed
package. ``make install`` installs it editable in setuptools' strict mode: a tree of links
under ``build/`` that path-based tools (pyright, mypy, editors) follow like any package.

The same file installs the project (``pip install -e .[test]``, ``pip wheel .``) and stages it
to Dataflow workers (``--setup_file``, filled in automatically from a checkout).
"""
import os

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
FOLDERS = {"ctrflow.common": "common", "ctrflow.schemas": "schemas", "ctrflow.pipeline": "pipeline",
           "ctrflow.model": "model", "ctrflow.beam_jobs": "beam_jobs", "ctrflow.cli": "cli", "ctrflow.data": "data"}


def _packages() -> list[str]:
    """Every folder with an ``__init__.py`` under a mapped folder, as its dotted ``ctrflow.*`` name."""
    found = []
    for package, folder in FOLDERS.items():
        for here, dirs, files in os.walk(os.path.join(HERE, folder)):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
            if "__init__.py" in files:
                rel = os.path.relpath(here, os.path.join(HERE, folder))
                found.append(package if rel == "." else f"{package}.{rel.replace(os.sep, '.')}")
    return found


def _readme() -> str:
    path = os.path.join(HERE, "README.md")
    if not os.path.exists(path):  # a Dataflow worker building from an sdist without it
        return ""
    with open(path, encoding="utf-8") as f:
        return f.read()


setup(
    name="ctrflow",
    version="0.2.0",
    description="Schema-driven tf.Transform preprocessing, Keras DeepFM/Wide&Deep training and Beam batch "
                "scoring for click-through-rate models",
    long_description=_readme(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=_packages(),
    package_dir=FOLDERS,
    package_data={"ctrflow.schemas": ["*.yaml"], "ctrflow.data": ["census/*"]},
    include_package_data=False,
    install_requires=[
        # minor versions pinned: ctrflow.common.compat uses internals of these, tested with exactly these minors
        "tensorflow>=2.21,<2.22",
        "tensorflow-transform>=1.21,<1.22",
        "tfx-bsl>=1.21,<1.22",
        "apache-beam[gcp]>=2.77,<2.78",
        "keras>=3.15,<3.16",
        "tf-keras>=2.21,<2.22",
        "pandas>=2.2,<4",
        "pyarrow>=14,<26",
        "numpy>=1.26,<3",
        "pyyaml>=6,<7",
        "matplotlib>=3.8,<4",
        "tensorboard>=2.20,<3",
        "isal>=1.6,<2; platform_machine in 'x86_64 AMD64 aarch64 arm64'",  # faster gzip of the TFRecords
    ],
    extras_require={"test": ["pytest>=8,<10", "pytest-xdist>=3.6,<4",  # make test runs on every core
                             "ruff>=0.17,<0.18", "gcp-storage-emulator>=2024.8",
                             "pyright>=1.1.414,<1.2",  # make typecheck; fetches its node package on first use
                             # tests/test_dask_runner.py: the jobs on a local dask.distributed cluster (Beam's
                             # dask extra; tested with dask and distributed 2026.11)
                             "dask[distributed]>=2024.4.2"],
                    # benchmarks only: train.py's DeepCTR reference, quality*.py's LightGBM baseline
                    "bench": ["deepctr>=0.9.4,<0.10", "lightgbm>=4.0,<5"]},
    entry_points={"console_scripts": ["ctrflow=ctrflow.cli:entry"]},
)

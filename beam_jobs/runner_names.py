"""Runner names: ``--runner`` aliases, and the options classes that live in a runner's own module.

Beam resolves a short ``--runner`` name (any case, with or without ``Runner``)
only for the runners it lists in ``StandardOptions.ALL_KNOWN_RUNNERS``; a
runner Beam ships outside that list (``DaskRunner``, ``RenderRunner``) has to
be given as its full class path, and its options class (``DaskOptions``) is
only known once its module is imported. Here every runner Beam ships gets a
short name, and a runner's own options module is imported when the runner is
chosen or when a flag is otherwise unknown, so ``--dask_client_address``
passes the flag filter (``beam_jobs.options``).
"""
from __future__ import annotations

import importlib

from apache_beam.options.pipeline_options import StandardOptions

from ctrflow.common.errors import OptionsError

# runners Beam ships but does not list in StandardOptions.ALL_KNOWN_RUNNERS (so it cannot resolve their short names)
_UNLISTED_RUNNERS = ("apache_beam.runners.dask.dask_runner.DaskRunner", "apache_beam.runners.render.RenderRunner")
# runner class path -> (module defining its own PipelineOptions subclass, pip requirement when it fails to import)
RUNNER_OPTIONS_MODULES = {
    "apache_beam.runners.dask.dask_runner.DaskRunner": ("apache_beam.runners.dask.dask_runner",
                                                        "dask[distributed] (pip install 'apache-beam[dask]')"),
}


def _key(name: str) -> str:
    name = name.lower()
    return name[:-len("runner")] if name.endswith("runner") and name != "runner" else name


def _runner_paths() -> dict[str, str]:
    """Short name (lower case, without 'runner') -> class path, of every runner Beam ships."""
    return {_key(path.rsplit(".", 1)[-1]): path for path in (*StandardOptions.ALL_KNOWN_RUNNERS, *_UNLISTED_RUNNERS)}


def runner_path(name: str) -> str:
    """The class path of a ``--runner`` value: a short name in any case, with or without 'Runner', or a path."""
    if "." in name:
        return name
    path = _runner_paths().get(_key(name))
    if path is None:
        known = ", ".join(sorted({p.rsplit(".", 1)[-1] for p in _runner_paths().values()}))
        raise OptionsError(f"--runner {name}: unknown runner; give one of {known} (any case, 'Runner' optional) "
                           "or a runner's full class path")
    return path


def beam_runner_name(name: str) -> str:
    """What to hand Beam for ``--runner``: the name as given when Beam resolves it itself, else the class path."""
    path = runner_path(name)
    return name if "." in name or path in StandardOptions.ALL_KNOWN_RUNNERS else path


def is_runner(name: str | None, short: str) -> bool:
    """Whether ``--runner name`` (None: Beam's default, the DirectRunner) is the runner ``short`` names."""
    return runner_path(name or "DirectRunner") == runner_path(short)


def import_runner_options(runner: str | None = None) -> None:
    """Imports the options module of ``runner`` (of every runner when None), which registers its flags with Beam.

    A named runner whose module cannot be imported (its engine is not installed) stops the job with one line;
    when checking unknown flags (``runner`` None) such a module is skipped.
    """
    paths = [runner_path(runner)] if runner else list(RUNNER_OPTIONS_MODULES)
    for path in paths:
        if path not in RUNNER_OPTIONS_MODULES:
            continue
        module, requirement = RUNNER_OPTIONS_MODULES[path]
        try:
            importlib.import_module(module)
        except ImportError as e:
            if runner:
                raise OptionsError(f"--runner {runner} needs {requirement}: {e}") from None

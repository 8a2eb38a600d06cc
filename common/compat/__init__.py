"""Every use of a library's private internals, and every import-system or process trick, in one place.

Why: part of ctrflow's speed rests on TensorFlow, Keras and Beam internals
that no release promises to keep (what each one buys is in ``TRICKS`` and the
docstring of the function using it). Kept here, one module per library
(``tensorflow``, ``keras``, ``beam``, ``tft``), each trick:

- is named in ``TRICKS``;
- is probed once: where it fails (another library layout), one warning is
  logged and its public-API path is used for the rest of the process;
- has a public-API path giving the same results, tested side by side in
  ``tests/test_compat.py`` (bit for bit, or within a stated tolerance);
- is off when the environment sets ``CTRFLOW_PUBLIC_API_ONLY=1``: then only
  public APIs run (``make test-public-api`` runs the job tests that way).

``paths_used()`` tells which path each trick took in this process; the job
manifests record it (``manifest()``). setup.py pins every wrapped library to
the minor version these paths were tested with.

Layering: the bottom layer. These modules import the library they wrap
(lazily where its import time matters), never another ctrflow layer.
"""
from __future__ import annotations

import logging
import os
import sys
import threading

from ctrflow.common.errors import OptionsError

PUBLIC_API_ONLY = "CTRFLOW_PUBLIC_API_ONLY"

# trick -> what it does, and its public path (what each buys: the docstring of the function using it)
TRICKS: dict[str, str] = {
    "tensorflow.deferred_import": "scoring imports TensorFlow's serving modules without running tensorflow/__init__ "
                                  "(a stand-in package in sys.modules); public: import tensorflow",
    "tensorflow.skip_eager_keras": "import tensorflow with Keras' optimizers marked absent in sys.modules; "
                                   "public: import tensorflow",
    "tensorflow.partial_load": "load only the SavedModel objects scoring calls (load.Loader with a pruned proto); "
                               "public: tf.saved_model.load of the whole export",
    "tensorflow.flat_call": "call a signature with flat EagerTensors (ConcreteFunction._call_flat); "
                            "public: the keyword call",
    "tensorflow.grappler_off": "no Grappler pass over the serving functions, process-wide in a scoring process; "
                               "public: TensorFlow's default (Grappler on)",
    "keras.optimizer_slots": "the sparse optimizers find their slot variables through Keras' private lists; "
                             "public: matched by name in optimizer.variables",
    "tf_keras.no_layer_traces": "export without tf_keras' extra traces of the transform layer; "
                                "public: the traces are saved too (a larger export, the same signatures)",
    "keras.skip_symbolic_build": "under a tf.distribute strategy, fit skips Keras' symbolic build of the (already "
                                 "built) model, which takes the first batch off the training data and, under "
                                 "MultiWorkerMirroredStrategy, fails; public: mirrored training loses that batch, "
                                 "multi-worker training is refused with one line",
    "beam.fn_api_runner": "local jobs run on Beam's FnApiRunner without offering the pipeline to Prism first; "
                          "public: Beam's DirectRunner",
    "beam.dask_runner": "the DaskRunner separates tagged outputs, runs every branch, keeps finish_bundle outputs "
                        "and computes each side input once (Beam's own loses rows); public: the DaskRunner refused",
    "beam.quiet_worker_tracebacks": "sys.stderr drops what Beam's SdkWorker._execute prints of a failed bundle "
                                    "(found by its frame); public: stderr as it is",
    "python.fast_exit": "the CLI ends with os._exit, skipping interpreter teardown; public: sys.exit",
}

_LOCK = threading.Lock()
_USED: dict[str, str] = {}
_FAILED: dict[str, str] = {}


def public_api_only() -> bool:
    """True when ``CTRFLOW_PUBLIC_API_ONLY`` asks for public APIs only; any value but 0/1 stops with one line."""
    value = os.environ.get(PUBLIC_API_ONLY, "").strip()
    if value not in ("", "0", "1"):
        raise OptionsError(f"{PUBLIC_API_ONLY}={value!r}: use 1 (public APIs only) or 0")
    return value == "1"


def use_trick(trick: str) -> bool:
    """Whether ``trick`` may run: not switched off by ``CTRFLOW_PUBLIC_API_ONLY`` and not failed in this process."""
    if trick not in TRICKS:
        raise KeyError(f"unknown compat trick {trick!r}")
    return not public_api_only() and trick not in _FAILED


def record(trick: str, path: str) -> None:
    """Notes that ``trick`` ran its ``"trick"`` or ``"public"`` path (the last one wins)."""
    if trick not in TRICKS or path not in ("trick", "public"):
        raise ValueError(f"record({trick!r}, {path!r})")
    with _LOCK:
        _USED[trick] = path


def trick_failed(trick: str, error: BaseException) -> None:
    """Turns ``trick`` off for the rest of the process, with one warning naming what failed."""
    with _LOCK:
        first = trick not in _FAILED
        _FAILED[trick] = f"{type(error).__name__}: {str(error)[:200]}"
    if first:
        logging.warning("%s failed (%s: %s); using the public API path instead", trick, type(error).__name__,
                        str(error)[:300])


def paths_enabled() -> dict[str, bool]:
    """Each trick, and whether it may run in this process now."""
    return {trick: use_trick(trick) for trick in TRICKS}


def paths_used() -> dict[str, str]:
    """Each trick that ran in this process, and the path it took (``"trick"`` or ``"public"``)."""
    with _LOCK:
        return dict(sorted(_USED.items()))


def manifest() -> dict:
    """What a job manifest records: the mode, the paths taken in this process, and tricks that failed.

    On a remote runner the workers are other processes: this is the launching
    process's record (its model preload, its pipeline construction).
    """
    with _LOCK:
        failed = dict(sorted(_FAILED.items()))
    return {"public_api_only": public_api_only(), "paths_used": paths_used(), "failed": failed}


def exit_process(code: int) -> None:
    """Ends the process with ``code`` once everything is flushed: ``os._exit`` by default, else ``sys.exit``.

    Trick (``python.fast_exit``): after a job every output is written and
    published and the jobs remove their own temporary folders; what is left is
    tearing down TensorFlow, gRPC and Beam's worker threads, which took
    seconds after a scoring run. It also skips other libraries' ``atexit``
    handlers; the public path is the normal exit (``sys.exit``).
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        fast = use_trick("python.fast_exit")
    except OptionsError:
        fast = False
    if fast:
        os._exit(code)
    sys.exit(code)

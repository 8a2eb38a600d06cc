"""The slice of TensorFlow a scoring process uses, imported without running ``tensorflow/__init__.py``.

Why: ``import tensorflow`` imports every public API module first (tf.data,
tf.distribute and its test combinations, feature columns, autograph,
compat.v1, Keras' optimizers): 2.1 CPU s on the 2-core benchmark machine,
where loading a SavedModel and calling its functions needs 1.2 s of it. The
scoring job imports TensorFlow in a thread that shares the GIL with Beam's
start, so that CPU is time before the first batch can be scored.

How: ``tensorflow`` is registered in ``sys.modules`` as a package whose
``__init__`` has not run (``_DeferredPackage``), so ``tensorflow.python.*``
modules import as usual and this module takes the few functions scoring
calls from them. The first access of any other attribute of the package
(``tf.constant``, ``from tensorflow import keras``, a later
``import tensorflow as tf`` anywhere in the process) runs the real
``__init__`` into that same module object, so code needing the full API gets
it, a little later. Where anything here fails (another TensorFlow layout),
``runtime()`` falls back to the public API of a full import; setup.py pins
TensorFlow's minor version.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import logging
import sys
import threading
import types
from typing import Any, Callable, Sequence

import numpy as np

_PACKAGE = "tensorflow"
_LOCK = threading.RLock()


class _DeferredPackage(types.ModuleType):
    """``tensorflow`` before its ``__init__`` ran: submodules import, any other attribute runs ``__init__`` first."""

    def __getattr__(self, name: str) -> Any:  # only called for attributes not set yet
        if name in _PROBES or not _finish(self):
            raise AttributeError(f"module {_PACKAGE!r} has no attribute {name!r}")
        return getattr(self, name)


# Attributes that tools probe on any module (inspect, linecache, pickling): asking for them must not run __init__.
_PROBES = frozenset({"__wrapped__", "__cached__", "__builtins__", "__annotations__", "__reduce__",
                     "__reduce_ex__", "__getstate__", "__origin__", "__signature__"})


_initializing: set[int] = set()  # threads running the deferred __init__ (its own lookups must not recurse)


def _finish(module: types.ModuleType) -> bool:
    """Runs the real ``tensorflow/__init__.py`` into ``module`` once; False while this thread is already in it."""
    from ctrflow.model.artifact import blocked_eager_keras

    with _LOCK:
        if type(module) is not _DeferredPackage:
            return True
        me = threading.get_ident()
        if me in _initializing:
            return False
        _initializing.add(me)
        try:
            with blocked_eager_keras():
                module.__spec__.loader.exec_module(module)
            module.__class__ = types.ModuleType
        finally:
            _initializing.discard(me)
        return True


def is_deferred() -> bool:
    """True while ``tensorflow``'s ``__init__`` has not run in this process (tests check scoring keeps it so)."""
    return type(sys.modules.get(_PACKAGE)) is _DeferredPackage


def _install_deferred_package() -> None:
    """Puts an un-initialised ``tensorflow`` package in ``sys.modules`` unless one is there already."""
    with _LOCK:
        if _PACKAGE in sys.modules:
            return
        spec = importlib.util.find_spec(_PACKAGE)
        if spec is None or spec.submodule_search_locations is None:
            raise ImportError("tensorflow is not installed")
        module = _DeferredPackage(_PACKAGE)
        module.__spec__ = spec
        module.__loader__ = spec.loader
        module.__file__ = spec.origin
        module.__path__ = list(spec.submodule_search_locations)
        module.__package__ = _PACKAGE
        spec._initializing = False  # the import system must not wait for a module lock on it
        sys.modules[_PACKAGE] = module


@dataclasses.dataclass(frozen=True)
class ServingRuntime:
    """The TensorFlow functions the scoring path calls (the public names in comments)."""

    load_saved_model: Callable  # tf.saved_model.load
    constant: Callable  # tf.constant
    string: Any  # tf.string
    substr: Callable  # tf.strings.substr
    unstack: Callable  # tf.unstack
    set_optimizer_options: Callable  # tf.config.optimizer.set_experimental_options
    set_intra_op_threads: Callable  # tf.config.threading.set_intra_op_parallelism_threads
    set_inter_op_threads: Callable  # tf.config.threading.set_inter_op_parallelism_threads


def _lean() -> ServingRuntime:
    _install_deferred_package()
    from tensorflow.python.compat import v2_compat
    from tensorflow.python.framework import config, constant_op, dtypes
    from tensorflow.python.ops import array_ops_stack, string_ops
    from tensorflow.python.saved_model import load

    if is_deferred():  # what the package's __init__ does (eager execution...); after a full import, not again
        v2_compat.enable_v2_behavior()
    return ServingRuntime(load.load, constant_op.constant, dtypes.string, string_ops.substr_v2, array_ops_stack.unstack,
                          config.set_optimizer_experimental_options, config.set_intra_op_parallelism_threads,
                          config.set_inter_op_parallelism_threads)


def _full() -> ServingRuntime:
    from ctrflow.model.artifact import import_tensorflow

    tf = import_tensorflow()
    return ServingRuntime(tf.saved_model.load, tf.constant, tf.string, tf.strings.substr, tf.unstack,
                          tf.config.optimizer.set_experimental_options,
                          tf.config.threading.set_intra_op_parallelism_threads,
                          tf.config.threading.set_inter_op_parallelism_threads)


_RUNTIME: list[ServingRuntime] = []


def flat_caller(fn: Any) -> tuple[tuple[str, ...], Callable[[Sequence[np.ndarray]], dict]]:
    """A loaded signature's input names, and a call taking one NumPy array per name in that order.

    Why: a compiled ``score_features`` call on 8,192 rows took 6.7 ms, of which
    1.3 ms were TensorFlow checking and flattening its 52 keyword inputs and
    0.8 ms ``tf.constant``'s dispatch (0.5 ms as plain EagerTensors), all
    holding the GIL that the other worker thread needs: 5M rows make 610 such
    calls. The arrays must already have the signature's dtypes (the scorer's
    come from the transform's outputs). Where this TensorFlow lacks the
    private entry points, the call is the keyword call.
    """
    names = tuple(getattr(fn, "_arg_keywords", None) or fn.structured_input_signature[1])
    try:
        from tensorflow.python.eager import context
        from tensorflow.python.framework import ops

        tensor, device = ops.EagerTensor, context.context().device_name
        call_flat, captured = fn._call_flat, fn.captured_inputs
        if len(names) != len(fn.structured_input_signature[1]):
            raise AttributeError("positional inputs")
    except (ImportError, AttributeError):
        constant = runtime().constant
        return names, lambda arrays: fn(**{n: constant(a) for n, a in zip(names, arrays)})
    return names, lambda arrays: call_flat([tensor(a, device) for a in arrays], captured)


def runtime() -> ServingRuntime:
    """The serving functions, importing as little of TensorFlow as they need (once per process)."""
    if not _RUNTIME:
        try:  # not under _LOCK: two threads may both import here, which Python's module locks make safe
            found = _lean()
        except (ImportError, AttributeError) as e:
            logging.warning("importing TensorFlow's serving functions alone failed (%s: %s); "
                            "importing all of TensorFlow", type(e).__name__, e)
            found = _full()
        with _LOCK:
            if not _RUNTIME:
                _RUNTIME.append(found)
    return _RUNTIME[0]

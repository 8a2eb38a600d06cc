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


def load_saved_model_parts(export_dir: str, paths: Sequence[str]) -> dict[str, Any]:
    """Loads only the objects at ``paths`` (``"root.transform"``, ``"root.signatures.score_features"``).

    Why: ``tf.saved_model.load`` turns every function of the export into
    Python graph objects, 6,100 graph nodes on the scoring benchmark's model,
    while the distinct-values scorer calls two functions that need about
    1,600 of them; the load holds the GIL that Beam's start needs in the same
    process. Loading those two took 0.33 s against 0.75 s for the whole
    export, with identical transform outputs and scores.

    How: TensorFlow's own partial loader (``load_partial``'s ``Loader`` with
    node filters), given a copy of the SavedModel proto whose function
    library keeps only the functions those objects call, transitively. Also
    loaded: what they capture (variables, tables, assets) and every resource
    of the export (tf.Transform's table initializer is one, and no function
    captures it). Raises if any of that is missing or this TensorFlow's
    internals differ; callers then load the whole export.
    """
    from tensorflow.python.checkpoint import checkpoint_options
    from tensorflow.python.framework import ops
    from tensorflow.python.saved_model import function_deserialization, load, load_options, loader_impl

    proto, _ = loader_impl.parse_saved_model_with_debug_info(export_dir)
    if len(proto.meta_graphs) != 1 or not proto.meta_graphs[0].HasField("object_graph_def"):
        raise ValueError(f"{export_dir}: not a TF2 SavedModel with one MetaGraph")
    meta_graph = proto.meta_graphs[0]
    graph = meta_graph.object_graph_def
    node_paths = {0: "root"}
    queue = [0]
    while queue:  # breadth first: each node's shortest path, as the loader's filters name nodes
        node = queue.pop(0)
        for ref in graph.nodes[node].children:
            if ref.node_id not in node_paths:
                node_paths[ref.node_id] = f"{node_paths[node]}.{ref.local_name}"
                queue.append(ref.node_id)
    node_ids = {path: node for node, path in node_paths.items()}
    missing = [p for p in paths if p not in node_ids]
    if missing:
        raise KeyError(f"{export_dir} has no {', '.join(missing)}")

    def concrete_functions(node) -> list[str]:
        kind = node.WhichOneof("kind")
        if kind == "function":
            return list(node.function.concrete_functions)
        if kind == "bare_concrete_function":
            return [node.bare_concrete_function.concrete_function_name]
        return []

    keep, stack = set(), [node_ids[p] for p in paths]
    stack += [i for i, node in enumerate(graph.nodes) if node.WhichOneof("kind") == "resource"]
    while stack:
        node_id = stack.pop()
        if node_id in keep:
            continue
        keep.add(node_id)
        node = graph.nodes[node_id]
        stack += [ref.node_id for ref in node.children] + [ref.node_id for ref in node.dependencies]
        for name in concrete_functions(node):
            stack += list(graph.concrete_functions[name].bound_inputs)
        for saveable in node.saveable_objects.values():
            stack += [saveable.save_function, saveable.restore_function]
    library = meta_graph.graph_def.library
    by_name = {f.signature.name: f for f in library.function}
    called, stack = set(), [name for node in keep for name in concrete_functions(graph.nodes[node])]
    while stack:
        name = stack.pop()
        if name in called or name not in by_name:
            continue
        called.add(name)
        stack += list(function_deserialization._list_function_deps(by_name[name], set(by_name), {}))
    kept = [f for name, f in by_name.items() if name in called]
    del library.function[:]
    library.function.extend(kept)
    for name in [n for n in graph.concrete_functions if n not in called]:
        del graph.concrete_functions[name]
    with ops.init_scope():
        loader = load.Loader(graph, proto, export_dir, checkpoint_options.CheckpointOptions(),
                             load_options.LoadOptions(allow_partial_checkpoint=True),  # values of unloaded objects
                             sorted(node_paths[n] for n in keep))
    return {p: loader.get(node_ids[p]) for p in paths}


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

"""TensorFlow internals of the scoring path and of ``import tensorflow``, each beside its public-API path.

Importing this module imports no TensorFlow. The tricks (``ctrflow.common.compat.TRICKS``):

- ``tensorflow.deferred_import``: ``serving_runtime()``, the few functions
  scoring calls, imported without running ``tensorflow/__init__.py``;
- ``tensorflow.skip_eager_keras``: ``import_tensorflow()`` without the
  Keras import TensorFlow's ``__init__`` makes;
- ``tensorflow.partial_load``: ``load_saved_model_parts()``, only the
  SavedModel objects a scorer calls;
- ``tensorflow.flat_call``: ``flat_caller()``, a signature called with flat
  EagerTensors;
- ``tensorflow.grappler_off``: ``disable_graph_optimizer()``.

Each falls back to its public path where it fails (another TensorFlow
layout; setup.py pins TensorFlow's minor version) and with
``CTRFLOW_PUBLIC_API_ONLY=1``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import sys
import threading
import types
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ctrflow.common import compat

DEFERRED_IMPORT = "tensorflow.deferred_import"
SKIP_EAGER_KERAS = "tensorflow.skip_eager_keras"
PARTIAL_LOAD = "tensorflow.partial_load"
FLAT_CALL = "tensorflow.flat_call"
GRAPPLER_OFF = "tensorflow.grappler_off"

_PACKAGE = "tensorflow"
_LOCK = threading.RLock()


# ----------------------------------------------------------------- import tensorflow, without its eager Keras import

_EAGER_KERAS = ("keras.src.optimizers", "tf_keras.src.optimizers")


@contextlib.contextmanager
def _eager_keras_blocked() -> Iterator[None]:
    """TensorFlow's eager Keras imports marked absent while its ``__init__`` runs (see ``import_tensorflow``)."""
    if not compat.use_trick(SKIP_EAGER_KERAS):
        compat.record(SKIP_EAGER_KERAS, "public")
        yield
        return
    blocked = [m for m in _EAGER_KERAS if m not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    compat.record(SKIP_EAGER_KERAS, "trick")


def import_tensorflow():
    """``import tensorflow``, skipping its eager import of Keras when Keras is not loaded yet.

    Trick (``tensorflow.skip_eager_keras``): TensorFlow's ``__init__`` imports
    ``keras.src.optimizers`` (all of Keras 3, matplotlib included;
    ``tf_keras.src.optimizers`` with TF_USE_LEGACY_KERAS=1) inside
    ``try/except ImportError`` only to register optimizers for SavedModels that
    hold them; a serving export holds none. Marking those modules absent in
    ``sys.modules`` for the duration of the import saves a large share of the
    import's CPU time; the marks are removed afterwards, so a later
    ``import keras`` works as usual. Public path: ``import tensorflow``.
    """
    if "tensorflow" in sys.modules:
        # an import statement, not the sys.modules entry: while another thread is still importing TensorFlow
        # the entry is a partially initialised module, and the import statement waits for it to finish
        import tensorflow as tf

        return tf
    with _eager_keras_blocked():
        import tensorflow as tf
    return tf


# ---------------------------------------------------------------- the serving functions, without tensorflow/__init__

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
    with _LOCK:
        if type(module) is not _DeferredPackage:
            return True
        me = threading.get_ident()
        if me in _initializing:
            return False
        _initializing.add(me)
        try:
            with _eager_keras_blocked():
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
    tf = import_tensorflow()
    return ServingRuntime(tf.saved_model.load, tf.constant, tf.string, tf.strings.substr, tf.unstack,
                          tf.config.optimizer.set_experimental_options,
                          tf.config.threading.set_intra_op_parallelism_threads,
                          tf.config.threading.set_inter_op_parallelism_threads)


_RUNTIME: list[ServingRuntime] = []


def serving_runtime() -> ServingRuntime:
    """The serving functions, importing as little of TensorFlow as they need (once per process).

    Trick (``tensorflow.deferred_import``): ``import tensorflow`` imports every
    public API module first (tf.data, tf.distribute and its test combinations,
    feature columns, autograph, compat.v1, Keras' optimizers), most of which
    loading a SavedModel and calling its functions does not need, and the
    scoring job imports TensorFlow in a thread that shares the GIL with
    Beam's start. So ``tensorflow`` is
    registered in ``sys.modules`` as a package whose ``__init__`` has not run
    (``_DeferredPackage``): ``tensorflow.python.*`` modules import as usual and
    this takes the few functions scoring calls from them. The first access of
    any other attribute of the package (``tf.constant``, ``from tensorflow
    import keras``, a later ``import tensorflow as tf`` anywhere in the
    process) runs the real ``__init__`` into that same module object, so code
    needing the full API gets it, a little later. Public path: the same
    functions from ``import tensorflow``.
    """
    if not _RUNTIME:
        found = None
        if compat.use_trick(DEFERRED_IMPORT):
            try:  # not under _LOCK: two threads may both import here, which Python's module locks make safe
                found, path = _lean(), "trick"
            except (ImportError, AttributeError) as e:
                compat.trick_failed(DEFERRED_IMPORT, e)
        if found is None:
            found, path = _full(), "public"
        with _LOCK:
            if not _RUNTIME:
                _RUNTIME.append(found)
                compat.record(DEFERRED_IMPORT, path)
    return _RUNTIME[0]


# ------------------------------------------------------------------------------------ partial SavedModel load

def load_saved_model_parts(export_dir: str, paths: Sequence[str]) -> dict[str, Any]:
    """The objects at ``paths`` (``"root.transform"``, ``"root.signatures.score_features"``) of a SavedModel.

    Trick (``tensorflow.partial_load``): ``tf.saved_model.load`` turns every
    function of the export into Python graph objects, while the
    distinct-values scorer calls two functions that need a fraction of them;
    the load holds the GIL that Beam's start needs in the same process.
    Loading only those two is faster, with identical transform outputs and
    scores. Public path: the whole export (``tf.saved_model.load``), the same
    objects picked from it. A path the export lacks raises ``KeyError``.
    """
    if compat.use_trick(PARTIAL_LOAD):
        try:
            found = _load_parts(export_dir, paths)
        except KeyError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure of the internals: the public whole load
            compat.trick_failed(PARTIAL_LOAD, e)
        else:
            compat.record(PARTIAL_LOAD, "trick")
            return found
    loaded = serving_runtime().load_saved_model(export_dir)
    compat.record(PARTIAL_LOAD, "public")
    return {p: _object_at(loaded, export_dir, p) for p in paths}


def _object_at(loaded: Any, export_dir: str, path: str) -> Any:
    parts = path.split(".")
    try:
        if parts[:2] == ["root", "signatures"] and len(parts) == 3:
            return loaded.signatures[parts[2]]
        if len(parts) == 2 and parts[0] == "root":
            return getattr(loaded, parts[1])
    except (KeyError, AttributeError):
        raise KeyError(f"{export_dir} has no {path}") from None
    raise ValueError(f"{path}: only root.<attribute> and root.signatures.<name> are supported")


def _load_parts(export_dir: str, paths: Sequence[str]) -> dict[str, Any]:
    """TensorFlow's own partial loader (``load_partial``'s ``Loader`` with node filters) on a pruned proto.

    The copy of the SavedModel proto keeps only the functions the objects at
    ``paths`` call, transitively. Also loaded: what they capture (variables,
    tables, assets) and every resource of the export (tf.Transform's table
    initializer is one, and no function captures it). Raises if any of that
    is missing or this TensorFlow's internals differ.
    """
    serving_runtime()  # TensorFlow's serving slice imported (lean where possible) before its internals are used
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


# ------------------------------------------------------------------------------------------ flat signature calls

def flat_caller(fn: Any) -> tuple[tuple[str, ...], Callable[[Sequence[np.ndarray]], dict]]:
    """A loaded signature's input names, and a call taking one NumPy array per name in that order.

    The names are in the signature's flat order, which ``tf.nest`` defines
    for a dict of keyword inputs as the sorted keys (``structured_input_signature``'s
    own dict order is not it); the arrays must already have the signature's dtypes.

    Trick (``tensorflow.flat_call``): in a compiled ``score_features`` call
    on 8,192 rows, TensorFlow checking and flattening its keyword inputs (52
    on the benchmark model) and ``tf.constant``'s dispatch took a sizeable
    share of the call, all holding the GIL that the other worker thread
    needs, once per call. So the arrays go as EagerTensors straight to the function's
    ``_call_flat``, only where the function's own input order (its
    ``_arg_keywords``, else its ``function_type``) is that flat order and every
    input is one plain tensor; otherwise, or where those entry points are
    missing, the call is the public keyword call.
    """
    specs = fn.structured_input_signature[1]
    names = tuple(sorted(specs))  # tf.nest.flatten's order of a dict's values: its sorted keys
    if compat.use_trick(FLAT_CALL):
        try:
            call = _flat_call(fn, names)
        except (ImportError, AttributeError) as e:  # this TensorFlow's internals differ
            compat.trick_failed(FLAT_CALL, e)
        except ValueError as e:  # this function's inputs do not fit the flat call
            logging.debug("%s: the keyword call for this signature (%s)", FLAT_CALL, e)
        else:
            compat.record(FLAT_CALL, "trick")
            return names, call
    constant = serving_runtime().constant
    compat.record(FLAT_CALL, "public")
    return names, lambda arrays: fn(**{n: constant(a) for n, a in zip(names, arrays)})


def _flat_call(fn: Any, names: tuple[str, ...]) -> Callable[[Sequence[np.ndarray]], dict]:
    from tensorflow.python.eager import context
    from tensorflow.python.framework import ops, tensor_spec

    specs = fn.structured_input_signature
    if specs[0] or any(type(s) is not tensor_spec.TensorSpec for s in specs[1].values()):
        raise ValueError("positional or composite (ragged, sparse) inputs")
    # the order _call_flat takes: the function's own keyword order, else its public FunctionType's parameters
    order = tuple(getattr(fn, "_arg_keywords", None) or fn.function_type.parameters)
    if order != names:
        raise ValueError(f"the function's input order {order[:3]}... is not the flat order {names[:3]}...")
    tensor, device = ops.EagerTensor, context.context().device_name
    call_flat, captured = fn._call_flat, fn.captured_inputs
    if len(fn.inputs) != len(names) + len(captured):
        raise ValueError(f"{len(fn.inputs)} graph inputs for {len(names)} inputs and {len(captured)} captures")
    return lambda arrays: call_flat([tensor(a, device) for a in arrays], captured)


# --------------------------------------------------------------------------------------------------- Grappler

def disable_graph_optimizer(runtime: ServingRuntime) -> None:
    """No Grappler pass over the functions this process calls (a scoring process runs nothing else in TensorFlow).

    Trick (``tensorflow.grappler_off``; a public setting, but process-wide):
    Grappler rewrites a function's graph on its first call, which lengthened
    the model's warm-up on the benchmark model and bought no throughput
    (score_and_ids on 8192-row calls took the same CPU either way). Public path: TensorFlow's default.
    """
    if not compat.use_trick(GRAPPLER_OFF):
        compat.record(GRAPPLER_OFF, "public")
        return
    runtime.set_optimizer_options({"disable_meta_optimizer": True})
    compat.record(GRAPPLER_OFF, "trick")

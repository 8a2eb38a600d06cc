"""Keras internals: the sparse optimizers' slot variables, and tf_keras' export without layer traces.

Tricks (``ctrflow.common.compat.TRICKS``):

- ``keras.optimizer_slots``: ``SlotVariables``, each model variable's
  optimizer slots through Keras' private lists;
- ``tf_keras.no_layer_traces``: ``without_layer_traces()``.
- ``keras.skip_symbolic_build``: ``skip_symbolic_build()``.

Each falls back to its public path where it fails (another Keras layout;
setup.py pins Keras' and tf.Transform's minor versions) and with
``CTRFLOW_PUBLIC_API_ONLY=1``.
"""
from __future__ import annotations

import contextlib
from typing import Any, Hashable, Sequence

from ctrflow.common import compat

OPTIMIZER_SLOTS = "keras.optimizer_slots"
NO_LAYER_TRACES = "tf_keras.no_layer_traces"
SKIP_SYMBOLIC_BUILD = "keras.skip_symbolic_build"

# a slot's name (``add_variable_from_reference(variable, name)``) -> the list Keras' optimizer keeps it in
_PRIVATE_LISTS = {"momentum": "_momentums", "velocity": "_velocities", "accumulator": "_accumulators",
                  "linear": "_linears"}


class SlotVariables:
    """Each model variable's index and its optimizer slot variables (``"momentum"``...), found once at build.

    Trick (``keras.optimizer_slots``): Keras' optimizers keep their slots in
    private lists (``_momentums``, ``_velocities``, ``_accumulators``,
    ``_linears``) in ``build``'s variable order, and map a variable to its
    index with the private ``_var_key``: what Keras' own custom-optimizer
    example does. Public path: the slots are found in the optimizer's public
    ``variables`` by the name ``add_variable_from_reference`` gives them
    (``{variable.path with "/" as "_"}_{slot}``), and a variable is known by
    ``tf.Variable.ref()`` (with each replica's copy under a tf.distribute
    strategy, ``Strategy.experimental_local_results``). Both find the same
    variable objects (tests/test_compat.py), so the updates are the same; a
    public lookup that finds no slot stops at build with one line.
    """

    def __init__(self, optimizer: Any, var_list: Sequence[Any], slots: Sequence[str]):
        self._optimizer = optimizer
        self._private = False
        if compat.use_trick(OPTIMIZER_SLOTS):
            try:
                self._slots = {s: list(getattr(optimizer, _PRIVATE_LISTS[s])) for s in slots}
                self._index = {optimizer._var_key(v): i for i, v in enumerate(var_list)}
                self._private = True
            except (AttributeError, KeyError, TypeError) as e:
                compat.trick_failed(OPTIMIZER_SLOTS, e)
        if not self._private:
            self._slots = {s: _public_slots(optimizer, var_list, s) for s in slots}
            self._index = {key: i for i, v in enumerate(var_list) for key in _public_keys(v)}
        compat.record(OPTIMIZER_SLOTS, "trick" if self._private else "public")

    def key(self, variable: Any) -> Hashable:
        return self._optimizer._var_key(variable) if self._private else _tf_variable(variable).ref()

    def index(self, variable: Any) -> int:
        """The variable's position in the optimizer's ``build`` list."""
        return self._index[self.key(variable)]

    def get(self, slot: str, variable: Any) -> Any:
        """The variable's ``slot`` (a Keras variable)."""
        return self._slots[slot][self.index(variable)]


def _tf_variable(v: Any) -> Any:
    import keras

    return v.value if isinstance(v, keras.Variable) else v


def _public_keys(variable: Any) -> list[Hashable]:
    import tensorflow as tf

    v = _tf_variable(variable)
    return [v.ref()] + [c.ref() for c in tf.distribute.get_strategy().experimental_local_results(v) if c is not v]


def _public_slots(optimizer: Any, var_list: Sequence[Any], slot: str) -> list[Any]:
    by_name = {v.name: v for v in optimizer.variables}
    found = []
    for v in var_list:
        name = f"{v.path.replace('/', '_')}_{slot}"
        if name not in by_name or tuple(by_name[name].shape) != tuple(v.shape):
            raise RuntimeError(f"{type(optimizer).__name__}: no {slot} slot variable named {name} for {v.path} "
                               "(another Keras version?); train with sparse_updates off")
        found.append(by_name[name])
    return found


def without_layer_traces() -> contextlib.AbstractContextManager:
    """A scope in which ``tf.saved_model.save`` saves tf_keras layers without extra traces of their ``call``.

    Trick (``tf_keras.no_layer_traces``): by default tf_keras traces a layer's
    call functions into the SavedModel so Keras can revive the layer; the
    serving export never revives its tf.Transform layer, and each trace was
    another copy of the whole transform graph in the function library. The
    flag is tf_keras' own (``tf.keras.models.save_model(save_traces=False)``
    sets it), reached through its private module. Public path: the traces
    are saved too (a larger export, the same signatures and outputs).
    """
    if compat.use_trick(NO_LAYER_TRACES):
        try:
            from tf_keras.src.saving.legacy.saved_model import utils as keras_saved_model_utils

            scope = keras_saved_model_utils.keras_option_scope(save_traces=False)
        except (ImportError, AttributeError) as e:
            compat.trick_failed(NO_LAYER_TRACES, e)
        else:
            compat.record(NO_LAYER_TRACES, "trick")
            return scope
    compat.record(NO_LAYER_TRACES, "public")
    return contextlib.nullcontext()


def skip_symbolic_build(model: Any) -> bool:
    """Makes ``model.fit`` skip Keras' symbolic build; False when only the public path is allowed.

    Trick (``keras.skip_symbolic_build``): under a tf.distribute strategy,
    Keras 3.15's ``fit`` first takes one batch off the training iterator and
    mean-reduces it over the replicas to build the model symbolically (the
    private ``_maybe_symbolic_build``): that batch is never trained on, and
    under ``MultiWorkerMirroredStrategy`` the reduce cannot take a dict of
    features and fails. A model built and compiled before ``fit``
    (``CTRModel``: ``compile`` builds it and its optimisers) has nothing to
    build. Public path: Keras' build (mirrored training skips the first
    batch; ``model.distribute`` refuses multi-worker training).
    """
    if compat.use_trick(SKIP_SYMBOLIC_BUILD):
        if callable(getattr(model, "_maybe_symbolic_build", None)) and model.built and model.optimizer.built:
            model._maybe_symbolic_build = lambda *args, **kwargs: None
            compat.record(SKIP_SYMBOLIC_BUILD, "trick")
            return True
        compat.trick_failed(SKIP_SYMBOLIC_BUILD, AttributeError("no built model with Keras' _maybe_symbolic_build"))
    compat.record(SKIP_SYMBOLIC_BUILD, "public")
    return False

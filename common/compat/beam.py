"""Beam internals: the runner of local batch jobs, and a working translation for the DaskRunner.

Tricks (``ctrflow.common.compat.TRICKS``): ``beam.fn_api_runner``
(``fn_api_runner()``), ``beam.dask_runner`` (``dask_runner()``), ``beam.quiet_worker_tracebacks``
(``quiet_worker_tracebacks()``). Each falls back to its public path where it fails
(another Beam layout; setup.py pins Beam's minor version) and with
``CTRFLOW_PUBLIC_API_ONLY=1``.
"""
from __future__ import annotations

import inspect
import sys
from typing import Any, TextIO

from ctrflow.common import compat
from ctrflow.common.errors import OptionsError

FN_API_RUNNER = "beam.fn_api_runner"
QUIET_WORKER_TRACEBACKS = "beam.quiet_worker_tracebacks"
_BEAM_WORKER = "apache_beam.runners.worker.sdk_worker"


def quiet_worker_tracebacks() -> None:
    """Wraps ``sys.stderr`` so that what Beam's SDK worker prints of a failed bundle is dropped; idempotent.

    Trick (``beam.quiet_worker_tracebacks``): it recognises Beam's private
    ``SdkWorker._execute`` by its frame. Public path: stderr as it is (the
    failure's traceback is printed once per worker thread before the CLI's
    one line).
    """
    if not compat.use_trick(QUIET_WORKER_TRACEBACKS):
        compat.record(QUIET_WORKER_TRACEBACKS, "public")
        return
    if not isinstance(sys.stderr, _WithoutWorkerTracebacks):
        sys.stderr = _WithoutWorkerTracebacks(sys.stderr)
    compat.record(QUIET_WORKER_TRACEBACKS, "trick")


class _WithoutWorkerTracebacks:
    """``sys.stderr`` without the traceback Beam's SDK worker prints, in one piece, for every failed bundle.

    Beam's ``SdkWorker._execute`` both logs that traceback (``_DropBeamReraiseLogs``)
    and prints it to ``sys.stderr``, on each worker thread, before the runner
    raises it to the caller. Only what that function prints is dropped
    (found by the caller's frame); everything else passes unchanged.
    """

    def __init__(self, stream: TextIO):
        self._stream = stream
        self._drop_newline = False  # print() writes its "\n" separately

    def write(self, text: str) -> int:
        if self._drop_newline and text == "\n":
            self._drop_newline = False
            return len(text)
        frame = inspect.currentframe()
        caller = frame.f_back if frame is not None else None  # print() is a builtin: its caller's frame
        self._drop_newline = (caller is not None and caller.f_code.co_name == "_execute"
                              and caller.f_globals.get("__name__") == _BEAM_WORKER)
        return len(text) if self._drop_newline else self._stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def fn_api_runner(options: Any) -> Any | None:
    """Beam's FnApiRunner built as the DirectRunner builds it for a batch job; None: Beam's DirectRunner.

    Trick (``beam.fn_api_runner``): Beam's DirectRunner first offers every
    batch pipeline to the Prism runner, which downloads a Prism binary from
    GitHub on first use, and runs it there when the download works; only when
    it fails does it fall back to the FnApiRunner. So the same command ran on
    two different engines depending on whether the machine could reach
    GitHub, and on a machine that cannot, every job paid for the attempt on
    its critical path. The FnApiRunner (what the DirectRunner falls back to) is
    built here with the same provision info, so ``--direct_num_workers`` /
    ``--direct_running_mode`` work as before. Its module is Beam's internal
    ``runners.portability.fn_api_runner``. Public path: ``None``, i.e. the
    DirectRunner named by the options (the same results, from Prism or from
    the FnApiRunner it falls back to).
    """
    if compat.use_trick(FN_API_RUNNER):
        try:
            from apache_beam.portability.api import beam_provision_api_pb2
            from apache_beam.runners.portability.fn_api_runner import fn_runner
            from apache_beam.runners.portability.portable_runner import JobServiceHandle

            # as the DirectRunner builds it: the workers see the job's options through the provision info
            encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
            runner = fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(
                beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))
        except (ImportError, AttributeError, TypeError) as e:
            compat.trick_failed(FN_API_RUNNER, e)
        else:
            compat.record(FN_API_RUNNER, "trick")
            return runner
    compat.record(FN_API_RUNNER, "public")
    return None


DASK_RUNNER = "beam.dask_runner"


def dask_runner() -> Any | None:
    """Beam's DaskRunner with its translation faults fixed; None: not available (the job refuses the runner).

    Trick (``beam.dask_runner``): Beam 2.77's DaskRunner (``runners.dask``, its
    private translation classes) loses data silently on the jobs' pipelines:
    (1) a ParDo's tagged outputs are not separated, so every consumer of any
    output gets all of them (clean rows and rejected rows mixed); (2) only the
    last transform's bag is computed, so every other branch (rejected rows,
    profiles, counts) never runs; (3) outputs a DoFn emits in ``finish_bundle``
    (``BatchElements``'s last batch) are dropped; (4) a side input is a bag
    computed again inside each consumer's bundle (a file write initialized
    once per bundle, leaving stray temp folders). Here: a ParDo's bag holds
    (tag, value) pairs that each consumer filters by its tag; every leaf is
    computed; results are collected after ``finish_bundle``; a side input is
    one Delayed over its bag's partitions, a dependency computed once in the
    same graph (a bag reduction passed as an argument was still computed once
    per consumer, dask 2026.11). A step of a type Beam's DaskRunner does not
    translate (Impulse, Read: a ``bigquery://`` input) stops the job in one line.
    Public path: none that gives correct results, so without the trick (or
    with ``CTRFLOW_PUBLIC_API_ONLY=1``) ``--runner DaskRunner`` is refused.
    """
    if compat.use_trick(DASK_RUNNER):
        try:
            runner = _dask_runner_class()()
        except (ImportError, AttributeError, TypeError) as e:
            compat.trick_failed(DASK_RUNNER, e)
        else:
            compat.record(DASK_RUNNER, "trick")
            return runner
    compat.record(DASK_RUNNER, "public")
    return None


def _dask_runner_class():
    """Beam's DaskRunner with four translation faults fixed (see ``dask_runner``)."""
    import dataclasses

    from apache_beam import DoFn, ParDo, TaggedOutput, pvalue
    from apache_beam.runners.common import DoFnContext, DoFnInvoker, DoFnSignature, _OutputHandler
    from apache_beam.runners.dask import dask_runner as dr
    from apache_beam.runners.dask import overrides as ov
    from apache_beam.runners.dask import transform_evaluator as te
    from apache_beam.transforms.sideinputs import SideInputMap

    def run_bundle(items, fn, label, window_fn, args, kwargs, views, *side_values):
        """One partition through the DoFn; outputs as (tag, value), finish_bundle's included."""
        receivers = te.OneReceiver()
        sides = [SideInputMap(view_class, view_options, [te.get_windowed_value(v, side_window_fn) for v in values])
                 for (view_class, view_options, side_window_fn), values in zip(views, side_values)]
        invoker = DoFnInvoker.create_invoker(
            DoFnSignature(fn),
            _OutputHandler(window_fn=window_fn, main_receivers=receivers[None], tagged_receivers=receivers,
                           per_element_output_counter=None, output_batch_converter=None,
                           process_yields_batches=False, process_batch_yields_elements=False),
            context=DoFnContext(label, state=None), side_inputs=sides, input_args=args, input_kwargs=kwargs,
            user_state_context=None, bundle_finalizer_param=DoFn.BundleFinalizerParam())
        invoker.invoke_setup()
        invoker.invoke_start_bundle()
        for item in items:
            invoker.invoke_process(item)
        invoker.invoke_finish_bundle()
        invoker.invoke_teardown()
        return [(o.tag, o.value.value) if isinstance(o, TaggedOutput) else (None, o.value) for o in receivers.values]

    def pick(pairs, tag):
        return [value for t, value in pairs if t == tag]

    @dataclasses.dataclass
    class Visitor(dr.PipelineVisitor):
        bag_kwargs: dict
        bags: dict = dataclasses.field(default_factory=dict)  # AppliedPTransform -> its bag
        tagged: dict = dataclasses.field(default_factory=dict)  # (AppliedPTransform, tag) -> that output's bag
        consumed: set = dataclasses.field(default_factory=set)
        pairs: set = dataclasses.field(default_factory=set)  # the ParDos, whose bags hold (tag, value) pairs
        sides: dict = dataclasses.field(default_factory=dict)  # PCollection -> its values as one Delayed

        def bag_of(self, pcoll):
            producer = pcoll.producer
            if producer not in self.pairs:
                return self.bags[producer]
            key = (producer, pcoll.tag)
            if key not in self.tagged:
                self.tagged[key] = self.bags[producer].map_partitions(pick, pcoll.tag)
            return self.tagged[key]

        def visit_transform(self, node) -> None:
            transform = node.transform
            if isinstance(transform, (ov._Reshuffle, ov._GroupAlsoByWindow)):
                op_class = None  # identities: a bag is already spread; _GroupByKeyOnly grouped the values
            elif isinstance(transform, ParDo):
                op_class = te.ParDo
            else:
                op_class = te.TRANSLATIONS.get(type(transform))
                if op_class is None:
                    raise OptionsError(f"--runner DaskRunner cannot run the step {node.full_label!r} "
                                       f"({type(transform).__name__}): Beam's DaskRunner translates only Create, "
                                       "ParDo, GroupByKey and Flatten")
            inputs = [i for i in node.inputs if not isinstance(i, pvalue.PBegin)]
            self.consumed.update(i.producer for i in inputs)
            self.consumed.update(si.pvalue.producer for si in node.side_inputs)
            bags = [self.bag_of(i) for i in inputs]
            if op_class is None:  # a reshuffle: nothing to do
                self.bags[node] = bags[0]
            elif op_class is te.Flatten:
                self.bags[node] = te.Flatten(node).apply(bags)
            elif op_class is te.ParDo:
                self.bags[node] = self.par_do(node, bags[0])
                self.pairs.add(node)
            else:
                self.bags[node] = op_class(node, bag_kwargs=self.bag_kwargs).apply(bags[0] if bags else None)

        def par_do(self, node, bag):
            transform = node.transform
            args, kwargs = transform.args, transform.kwargs  # side inputs as placeholders, as the invoker wants
            main = next(iter(node.main_inputs.values()))
            window_fn = main.windowing.windowfn if hasattr(main, "windowing") else None
            views, values = [], []
            for si in node.side_inputs:
                views.append((type(si), si._view_options(), si._window_mapping_fn))
                values.append(self.side_value(si.pvalue))
            return bag.map(te.get_windowed_value, window_fn).map_partitions(
                run_bundle, transform.fn, transform.label, window_fn, list(args), kwargs, views, *values)

        def side_value(self, pcoll):
            """A side input as one Delayed, computed once in the graph with the rest (not in each consumer)."""
            if pcoll not in self.sides:
                import dask

                self.sides[pcoll] = dask.delayed(_concat)(self.bag_of(pcoll).to_delayed(optimize_graph=False))
            return self.sides[pcoll]

        def leaves(self) -> list:
            return [bag for node, bag in self.bags.items() if node not in self.consumed and bag is not None]

    def _concat(parts):
        return [x for part in parts for x in part]

    class DaskRunnerResult(dr.DaskRunnerResult):
        def wait_until_finish(self, duration=None) -> str:
            try:
                return super().wait_until_finish(duration)
            finally:
                if self.state in (dr.PipelineState.DONE, dr.PipelineState.FAILED):
                    self.client.close()  # the job's connection to the cluster, not the cluster

    class DaskRunner(dr.DaskRunner):
        """Beam's DaskRunner, translating with ``Visitor`` (see ``dask_runner``)."""

        def run_pipeline(self, pipeline, options):
            import dask.distributed as ddist

            dask_options = options.view_as(dr.DaskOptions).get_all_options(drop_default=True, current_only=True)
            bag_kwargs = dr.DaskOptions._extract_bag_kwargs(dask_options)
            pipeline.replace_all(ov.dask_overrides())
            visitor = Visitor(bag_kwargs)
            pipeline.visit(visitor)  # before connecting: a step it cannot run stops the job at once
            client = ddist.Client(**dask_options)
            futures = client.compute(visitor.leaves(), optimize_graph=False)
            return DaskRunnerResult(client, futures)

    return DaskRunner

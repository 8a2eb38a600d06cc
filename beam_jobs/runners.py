"""Beam pipeline options of the jobs, and how a remote runner gets ctrflow onto its workers.

The jobs pass on to Beam only flags Beam recognizes (``beam_jobs.options``). On a
remote runner (Dataflow, Flink, ...) the workers need ctrflow itself, staged
in the first way that applies:

1. the user chose: ``--setup_file``, ``--sdk_container_image`` (a container built
   from the project's ``Dockerfile`` already holds ctrflow) or an ``--extra_package``
   named ``ctrflow-*`` (other extra packages are staged as well as ctrflow);
2. from a checkout or an editable install: the checkout's ``setup.py``;
3. from an installed wheel: a wheel rebuilt from the installed files (``worker_wheel.py``),
   passed as ``--extra_package``.

Local runners (Direct, Prism) stage nothing.

``new_pipeline`` is where every job gets its ``beam.Pipeline``: on the
DirectRunner it runs the pipeline on Beam's FnApiRunner directly (see
``local_runner`` for why).
"""
from __future__ import annotations

import logging
import os
from typing import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions, WorkerOptions
from apache_beam.runners.runner import PipelineRunner

from ctrflow.beam_jobs.runner_names import beam_runner_name, import_runner_options, is_runner
from ctrflow.beam_jobs.worker_wheel import installed_wheel
from ctrflow.common.compat.beam import dask_runner, fn_api_runner
from ctrflow.common.errors import OptionsError

# realpath: an editable install runs this file through a link under build/__editable__.*/ctrflow/
_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
# runners that stage nothing: local ones, and Dask, whose workers import ctrflow from their own environment
_LOCAL_RUNNERS = ("Direct", "Prism", "Interactive", "Dask")


def project_setup_file() -> str | None:
    """This project's setup.py, when running from a checkout or an editable install."""
    path = os.path.join(_PROJECT_ROOT, "setup.py")
    return path if os.path.exists(path) else None


def is_direct_runner(options: PipelineOptions) -> bool:
    """Whether the job runs on the DirectRunner, named with ``--runner`` (any alias) or by default."""
    runner = options.view_as(StandardOptions).runner
    return runner is None or (isinstance(runner, str) and is_runner(runner, "DirectRunner"))


def is_remote(options: PipelineOptions) -> bool:
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    runner = runner if isinstance(runner, str) else type(runner).__name__
    return not any(local.lower() in runner.lower() for local in _LOCAL_RUNNERS)


def pipeline_options(beam_args: Sequence[str]) -> PipelineOptions:
    """Beam options from the pass-through flags (``--runner`` aliases resolved), with remote runners staging ctrflow."""
    options = PipelineOptions(list(beam_args))
    standard = options.view_as(StandardOptions)
    if isinstance(standard.runner, str):
        import_runner_options(standard.runner)
        standard.runner = beam_runner_name(standard.runner)
    if is_remote(options):
        stage_ctrflow(options)
    return options


def local_runner(options: PipelineOptions) -> PipelineRunner | None:
    """The FnApiRunner for a batch job on the DirectRunner (named or by default); None otherwise.

    Beam's DirectRunner first offers every batch pipeline to the Prism runner,
    which downloads a Prism binary from GitHub on first use, and runs it there
    when the download works; only when it fails does it fall back to the
    FnApiRunner. So the same command ran on two different engines depending on
    whether the machine could reach GitHub, and on a machine that cannot, every
    job paid for the attempt on its critical path. ctrflow's jobs are batch jobs that
    the FnApiRunner runs (what the DirectRunner falls back to), with the same
    ``--direct_num_workers`` / ``--direct_running_mode`` handling, so a local
    run is the same everywhere and starts at once. ``--runner PrismRunner``
    still picks Prism explicitly. The FnApiRunner is Beam's internal module
    (``compat.beam.fn_api_runner``); with ``CTRFLOW_PUBLIC_API_ONLY=1`` this
    is None and the DirectRunner runs the job.
    """
    if not is_direct_runner(options) or options.view_as(StandardOptions).streaming:
        return None
    return fn_api_runner(options)


def dask_runner_of(options: PipelineOptions) -> PipelineRunner | None:
    """For ``--runner DaskRunner`` (any alias): Beam's DaskRunner with ctrflow's fix; None for other runners.

    Beam's own DaskRunner loses rows on these pipelines (``compat.beam.dask_runner``), so without the fix
    the runner is refused in one line. Without ``--dask_npartitions`` / ``--dask_partition_size``, each
    element of a ``Create`` (a read task) is a partition of its own.
    """
    runner = options.view_as(StandardOptions).runner
    if not (isinstance(runner, str) and is_runner(runner, "DaskRunner")):
        return None
    from apache_beam.runners.dask.dask_runner import DaskOptions

    dask = options.view_as(DaskOptions)
    if not dask.npartitions and not dask.partition_size:
        # Beam's DaskRunner puts up to 128 elements of a Create in one partition, i.e. all of a job's read
        # tasks in one worker; one element per partition spreads them over the cluster's workers
        dask.partition_size = 1
    fixed = dask_runner()
    if fixed is None:
        raise OptionsError("--runner DaskRunner: Beam's own DaskRunner mixes a step's tagged outputs and runs only "
                           "the pipeline's last branch; ctrflow runs it only with its fix (compat trick "
                           "beam.dask_runner), which is off here (CTRFLOW_PUBLIC_API_ONLY=1, or it failed to load)")
    return fixed


def new_pipeline(beam_args: Sequence[str]) -> beam.Pipeline:
    """The job's pipeline: Beam options from the pass-through flags, on ``local_runner`` when local."""
    options = pipeline_options(beam_args)
    return beam.Pipeline(runner=local_runner(options) or dask_runner_of(options), options=options)


def stage_ctrflow(options: PipelineOptions) -> None:
    """Adds what ships ctrflow to remote workers, unless the user named it; logs what it is."""
    setup = options.view_as(SetupOptions)
    image = options.view_as(WorkerOptions).sdk_container_image
    own = [p for p in setup.extra_packages or [] if os.path.basename(p).startswith("ctrflow-")]
    if setup.setup_file or image or own:
        logging.info("workers get ctrflow from %s", setup.setup_file or image or own[0])
        return
    setup_file = project_setup_file()
    if setup_file:
        setup.setup_file = setup_file
        logging.info("staging ctrflow to workers with the checkout's %s", setup_file)
        return
    wheel = installed_wheel()
    setup.extra_packages = [*(setup.extra_packages or []), wheel]  # the user's own packages stay
    logging.info("staging ctrflow to workers as --extra_package %s (built from the installed distribution)",
                 wheel)


def with_local_parallelism(beam_args: list[str]) -> list[str]:
    """On the DirectRunner with no worker flags given: one worker thread per core.

    Beam's DirectRunner defaults to one worker, which leaves all but one core
    idle. Threads (not processes) because pyarrow and TensorFlow release the
    GIL in their kernels and the workers then share one loaded model; worker
    processes would each import TensorFlow and load the model again.
    """
    if not is_direct_runner(PipelineOptions(beam_args)) or any(
            a.startswith(("--direct_num_workers", "--direct_running_mode")) for a in beam_args):
        return list(beam_args)
    return [*beam_args, f"--direct_num_workers={os.cpu_count() or 1}", "--direct_running_mode=multi_threading"]

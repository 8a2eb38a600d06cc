"""Command-line plumbing shared by the Beam jobs.

Each job parses its own flags and hands every flag it does not know to Beam's
``PipelineOptions`` unchanged, so ``--runner DataflowRunner --project ...``
works on any job. On Dataflow the job stages this project through its
``setup.py`` unless the user named a ``--setup_file`` already.
"""
from __future__ import annotations

import argparse
import logging
import os

from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions

_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def project_setup_file() -> str | None:
    """This project's setup.py, when running from a checkout or an editable install."""
    path = os.path.join(_PROJECT_ROOT, "setup.py")
    return path if os.path.exists(path) else None


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    """Beam options from the pass-through flags, with remote runners staging the project."""
    options = PipelineOptions(beam_args)
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    setup = options.view_as(SetupOptions)
    if "Direct" not in runner and "Prism" not in runner and not setup.setup_file:
        setup.setup_file = project_setup_file()
        logging.info("staging the project to workers with %s", setup.setup_file)
    return options


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-rejected-fraction", type=float, default=0.001,
                        help="fail (after writing the rejected rows) if more than this fraction of any "
                             "split's rows is rejected (default: %(default)s)")
    parser.add_argument("--batch-rows", type=int, default=65536,
                        help="rows per Arrow batch inside the pipeline (default: %(default)s)")


def beam_help_epilog() -> str:
    return ("Any other flag is a Beam pipeline option, passed through unchanged, e.g. --runner DataflowRunner "
            "--project P --region R --temp_location gs://b/tmp, or --direct_num_workers 2 "
            "--direct_running_mode multi_processing.")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger().setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("absl", "tensorflow", "apache_beam", "h5py", "tensorflow_transform"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("apache_beam.ml").setLevel(logging.ERROR)  # "resource module not available"


def with_local_parallelism(beam_args: list[str]) -> list[str]:
    """On the DirectRunner with no worker flags given: one worker thread per core.

    Beam's DirectRunner defaults to one worker, which leaves all but one core
    idle. Threads (not processes) because pyarrow and TensorFlow release the
    GIL in their kernels and the workers then share one loaded model; worker
    processes would each import TensorFlow and load the model again.
    """
    options = PipelineOptions(beam_args)
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    if runner not in ("DirectRunner", "direct") or any(
            a.startswith(("--direct_num_workers", "--direct_running_mode")) for a in beam_args):
        return list(beam_args)
    return [*beam_args, f"--direct_num_workers={os.cpu_count() or 1}", "--direct_running_mode=multi_threading"]

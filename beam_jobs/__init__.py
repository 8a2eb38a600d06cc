"""Beam wiring: each job a ``run(argv)`` whose Beam options pass through, on any runner.

    input/       planning reads of raw tables, format readers, screening bad rows (``ReadRows``)
    preprocess/  the tf.Transform job: analyze, split, transform, write TFRecords
    scoring/     the batch scoring job: the serving SavedModel in a RunInference handler
    outputs/     what jobs write: TFRecords, score tables, profiles, manifests, atomic publishing
    options.py   typed options of both jobs; runners.py builds pipelines; worker_wheel.py ships ctrflow
"""
from typing import TYPE_CHECKING

from ctrflow.common.lazy_exports import lazy_exports

if TYPE_CHECKING:  # what static tools read; at run time each name loads its module on first use
    from ctrflow.beam_jobs import input, outputs, preprocess, scoring
    from ctrflow.beam_jobs.input.transforms import ReadRows, WriteRejected
    from ctrflow.beam_jobs.options import PreprocessOptions, ScoreOptions
    from ctrflow.beam_jobs.outputs.profiles import ProfileBatches
    from ctrflow.beam_jobs.outputs.score_tables import WriteScores
    from ctrflow.beam_jobs.outputs.tfrecord_writer import WriteTFRecordBatches
    from ctrflow.beam_jobs.scoring.model_handler import ServingModelHandler

__all__ = ["PreprocessOptions", "ScoreOptions", "ReadRows", "WriteRejected", "WriteTFRecordBatches", "WriteScores",
           "ProfileBatches", "ServingModelHandler", "input", "preprocess", "scoring", "outputs"]
__getattr__, __dir__ = lazy_exports(globals(), {
    "options": ("PreprocessOptions", "ScoreOptions"),
    "input.transforms": ("ReadRows", "WriteRejected"),
    "outputs.tfrecord_writer": ("WriteTFRecordBatches",),
    "outputs.score_tables": ("WriteScores",),
    "outputs.profiles": ("ProfileBatches",),
    "scoring.model_handler": ("ServingModelHandler",),
}, modules=("input", "preprocess", "scoring", "outputs"))

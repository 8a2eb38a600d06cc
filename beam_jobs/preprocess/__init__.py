"""``ctrflow preprocess``: analyze training data with tf.Transform, split, transform and write gzip TFRecords."""
from typing import TYPE_CHECKING

from ctrflow.common.lazy_exports import lazy_exports

if TYPE_CHECKING:  # what static tools read; at run time each name loads its module on first use
    from ctrflow.beam_jobs.preprocess.job import build_pipeline, run, run_job
    from ctrflow.beam_jobs.preprocess.splits import HashSplit

__all__ = ["run", "run_job", "build_pipeline", "HashSplit"]
__getattr__, __dir__ = lazy_exports(globals(), {
    "job": ("run", "run_job", "build_pipeline"),
    "splits": ("HashSplit",),
})

"""``ctrflow score``: one daily table through the serving SavedModel, scores keyed by id, with drift reports."""
from typing import TYPE_CHECKING

from ctrflow.common.lazy_exports import lazy_exports

if TYPE_CHECKING:  # what static tools read; at run time each name loads its module on first use
    from ctrflow.beam_jobs.scoring.duplicate_ids import CountDuplicateIds
    from ctrflow.beam_jobs.scoring.job import build_pipeline, run, run_job, score_date
    from ctrflow.beam_jobs.scoring.model_handler import ServingModelHandler

__all__ = ["run", "run_job", "build_pipeline", "score_date", "ServingModelHandler", "CountDuplicateIds"]
__getattr__, __dir__ = lazy_exports(globals(), {
    "job": ("run", "run_job", "build_pipeline", "score_date"),
    "model_handler": ("ServingModelHandler",),
    "duplicate_ids": ("CountDuplicateIds",),
})

"""Reading and screening input: which files and pieces to read, the format readers, rows that fail to parse."""
from typing import TYPE_CHECKING

from ctrflow.common.lazy_exports import lazy_exports

if TYPE_CHECKING:  # what static tools read; at run time each name loads its module on first use
    from ctrflow.beam_jobs.input.bigquery import BigQueryRead, is_bigquery
    from ctrflow.beam_jobs.input.globs import check_output_location, pattern_can_match_inside
    from ctrflow.beam_jobs.input.plan import match_files, plan_reads
    from ctrflow.beam_jobs.input.readers import read_task
    from ctrflow.beam_jobs.input.tasks import InputError, ReadTask
    from ctrflow.beam_jobs.input.transforms import REJECTED, ReadRows, WriteRejected

__all__ = ["plan_reads", "match_files", "ReadTask", "InputError", "read_task", "BigQueryRead", "is_bigquery",
           "ReadRows", "WriteRejected", "REJECTED", "check_output_location", "pattern_can_match_inside"]
__getattr__, __dir__ = lazy_exports(globals(), {
    "plan": ("plan_reads", "match_files"),
    "tasks": ("ReadTask", "InputError"),
    "readers": ("read_task",),
    "bigquery": ("BigQueryRead", "is_bigquery"),
    "transforms": ("ReadRows", "WriteRejected", "REJECTED"),
    "globs": ("check_output_location", "pattern_can_match_inside"),
})

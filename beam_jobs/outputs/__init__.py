"""What the jobs write: TFRecords, score tables, feature profiles, manifests, and all-or-nothing publishing."""
from typing import TYPE_CHECKING

from ctrflow.common.lazy_exports import lazy_exports

if TYPE_CHECKING:  # what static tools read; at run time each name loads its module on first use
    from ctrflow.beam_jobs.outputs import manifest, publish
    from ctrflow.beam_jobs.outputs.profiles import ProfileBatches
    from ctrflow.beam_jobs.outputs.score_tables import WriteScores
    from ctrflow.beam_jobs.outputs.tfrecord_writer import WriteTFRecordBatches

__all__ = ["WriteTFRecordBatches", "WriteScores", "ProfileBatches", "publish", "manifest"]
__getattr__, __dir__ = lazy_exports(globals(), {
    "tfrecord_writer": ("WriteTFRecordBatches",),
    "score_tables": ("WriteScores",),
    "profiles": ("ProfileBatches",),
}, modules=("publish", "manifest"))

"""Logging set-up shared by every job (trainer and Beam jobs alike).

Kept at the pipeline layer, free of Beam and TensorFlow imports, so that
``model/`` and ``beam_jobs/`` both use it without importing each other.
"""
from __future__ import annotations

import logging

_NOISY = ("absl", "tensorflow", "apache_beam", "h5py", "tensorflow_transform")


def setup_logging(verbose: bool = False) -> None:
    """Our INFO lines with timestamps; library chatter only from WARNING up."""
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger().setLevel(level)
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("apache_beam.ml").setLevel(logging.ERROR)  # "resource module not available"


# What tf.Transform's TF1 mode (``beam_jobs.preprocess.job.transform_context``) logs on every run, all harmless:
# its own notice that it runs in that mode, and TensorFlow's remarks while it writes the TF1 SavedModel (the
# vocabulary assets and tf.Transform's usage counters are collection entries TF1 cannot serialize).
_TF1_NOTICES = (
    "Tensorflow Transform is running in tf.compat.v1 mode",
    "Issue encountered when serializing tft_",
    'Expected binary or unicode string, got type_url: "type.googleapis.com/tensorflow.AssetFileDef"',
    "build_tensor_info (from tensorflow.python.saved_model.utils_impl) is deprecated",
)


class _DropTF1Notices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(notice in message for notice in _TF1_NOTICES)


_TF1_FILTER = _DropTF1Notices()


def quiet_tf1_notices() -> None:
    """Drops the known TF1-mode notices (``_TF1_NOTICES``) from TensorFlow's and absl's loggers; idempotent."""
    for name in ("tensorflow", "absl"):
        logger = logging.getLogger(name)
        if _TF1_FILTER not in logger.filters:
            logger.addFilter(_TF1_FILTER)

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

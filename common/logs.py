"""Logging set-up shared by every job (trainer and Beam jobs alike).

Kept at the bottom layer (``common``), free of Beam and TensorFlow imports, so
that every layer (``model/``, ``beam_jobs/``, ``cli/``) uses it without importing
the others.

What a user sees on stderr is meant to be worth reading: ctrflow's own lines,
the warnings of libraries that ask something of the user, and nothing else.
Each notice dropped here is named, with why it asks nothing.

Run as a script (``python -I -S logs.py``) this module is the filter process
of ``native_notices_filtered``: standard library only.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import subprocess
import sys
from collections.abc import Iterator

_FORMAT, _DATEFMT = "%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"
_NOISY = ("absl", "tensorflow", "apache_beam", "h5py", "tensorflow_transform")


def setup_logging(verbose: bool = False) -> None:
    """Our INFO lines with timestamps; library chatter only from WARNING up, each line once."""
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format=_FORMAT, datefmt=_DATEFMT)
    for handler in logging.getLogger().handlers:
        # Beam's PipelineOptions() calls logging.basicConfig() when the root has no handler yet (the flag
        # check builds one before any job logs), which left its "INFO:root:" format on our lines
        if type(handler) is logging.StreamHandler:  # a test's capture handler (a subclass) keeps its own
            handler.setFormatter(logging.Formatter(_FORMAT, _DATEFMT))
    logging.getLogger().setLevel(level)
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("apache_beam.ml").setLevel(logging.ERROR)  # RunInference's chatter
    _drop_tensorflow_handler()
    _add_filter(logging.getLogger(), _LIBRARY_NOTICE_FILTER)
    for name in _BEAM_RERAISE_LOGGERS:
        if verbose:
            logging.getLogger(name).removeFilter(_BEAM_RERAISE_FILTER)
        else:
            _add_filter(logging.getLogger(name), _BEAM_RERAISE_FILTER)
    if not verbose:
        from ctrflow.common.compat import beam as beam_compat

        beam_compat.quiet_worker_tracebacks()


def _add_filter(logger: logging.Logger, log_filter: logging.Filter) -> None:
    if log_filter not in logger.filters:
        logger.addFilter(log_filter)


def _drop_tensorflow_handler() -> None:
    """Removes the handler TensorFlow gives its own logger when it logs before ours is set up.

    ``tf.get_logger()`` adds a stderr handler (``logging.BASIC_FORMAT``) to
    the ``tensorflow`` logger when the root logger has none yet, e.g. when a
    job imports TensorFlow before calling ``setup_logging``; its records also
    reach ours, so every TensorFlow warning printed twice.
    """
    logger = logging.getLogger("tensorflow")
    for handler in list(logger.handlers):
        if type(handler) is logging.StreamHandler:  # TensorFlow's; a FileHandler or a test's handler stays
            logger.removeHandler(handler)


class _DropMessages(logging.Filter):
    """Drops records whose message starts with one of ``prefixes``, logged from a file ending in ``source``."""

    def __init__(self, source: str, prefixes: tuple[str, ...]):
        super().__init__()
        self.source, self.prefixes = source, prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.pathname.replace("\\", "/").endswith(self.source)
                    and str(record.msg).startswith(self.prefixes))


# Beam's RunInference warns on every model load that it "cannot fetch memory usage": Beam 2.77 takes the
# `resource` module for absent when its optional model manager cannot import torch, and logs through the root
# logger, so the level of ``apache_beam`` does not reach it. Nothing for the user to do.
_LIBRARY_NOTICE_FILTER = _DropMessages("apache_beam/ml/inference/base.py", (
    "Resource module is not available for current platform",
))


class _DropBeamReraiseLogs(logging.Filter):
    """Drops Beam's log of a worker exception it is about to re-raise to the pipeline's caller.

    Each step that re-raises and each worker thread that ran the bundle logs
    the traceback again before the runner raises it: hundreds of lines before
    the CLI's one line. The exception itself still reaches the caller (the
    CLI prints its root cause, ``--debug`` its traceback); ``setup_logging(verbose=True)``
    keeps these logs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if record.name == "apache_beam.runners.common":
            return not (record.exc_info and "[while running '" in record.getMessage())
        return not message.startswith("Error processing instruction ")


_BEAM_RERAISE_LOGGERS = ("apache_beam.runners.common", "apache_beam.runners.worker.sdk_worker")
_BEAM_RERAISE_FILTER = _DropBeamReraiseLogs()
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


# ---------------------------------------------------------------- TensorFlow's C++ start-up notices

def _native(severity: str, source: str, message: str) -> re.Pattern[bytes]:
    """A line of TensorFlow's C++ log (absl's format: ``I1208 02:01:07.156286   15082 port.cc:153] ...``)."""
    return re.compile(rb"%s\d{4} [\d:.]+ +\d+ %s:\d+\] %s" % (
        severity.encode(), re.escape(source.encode()), re.escape(message.encode())))


# Written by TensorFlow's C++ side straight to file descriptor 2 on every start; none asks anything of the user.
# Most come from static initializers that run while TensorFlow's shared libraries load, before absl's logging is
# initialized and before TensorFlow reads TF_CPP_MIN_LOG_LEVEL (two of its libraries carry a copy each, so they
# print twice); TF_CPP_MIN_LOG_LEVEL=2 cannot stop them. Measured with TensorFlow 2.21 on a CPU-only machine.
NATIVE_NOTICES: tuple[re.Pattern[bytes], ...] = (
    re.compile(rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"),
    _native("I", "port.cc", "oneDNN custom operations are on."),
    _native("I", "cudart_stub.cc", "Could not find cuda drivers on your machine, GPU will not be used."),
    # an ERROR line for what is only a kernel choice (it falls back to Eigen's kernels)
    _native("E", "util.cc", "oneDNN supports DT_INT64 only on platforms with AVX-512."),
)
# Where no CUDA driver library is installed (the line above), TensorFlow's CUDA probe fails by construction and
# logs it as an error; that line is dropped only then. On a machine with a driver, a failing cuInit is a real
# problem and stays.
_NO_CUDA_DRIVER = NATIVE_NOTICES[2]
_CUINIT_FAILED = _native("E", "cuda_platform.cc", "failed call to cuInit: ")


class NativeNoticeFilter:
    """Decides line by line what of fd 2 to pass on (the state: whether a CUDA driver library was found)."""

    def __init__(self) -> None:
        self.no_cuda_driver = False

    def keep(self, line: bytes) -> bool:
        if _NO_CUDA_DRIVER.match(line):
            self.no_cuda_driver = True
        if self.no_cuda_driver and _CUINIT_FAILED.match(line):
            return False
        return not any(pattern.match(line) for pattern in NATIVE_NOTICES)


def filter_stream(source: int, target: int, wait: float = 0.2) -> None:
    """Copies ``source`` to ``target`` until end of file, without the lines ``NativeNoticeFilter`` drops.

    A partial line is held back until its end arrives or ``wait`` seconds pass
    (a notice is written in one piece; a prompt or progress text is not held).
    """
    notices, pending, target_ok = NativeNoticeFilter(), b"", True

    def write(data: bytes) -> None:
        nonlocal target_ok
        while data and target_ok:
            try:
                data = data[os.write(target, data):]
            except InterruptedError:
                continue
            except OSError:  # the reader went away: keep draining so that the writer never blocks
                target_ok = False

    while True:
        if pending and not select.select([source], [], [], wait)[0]:
            write(pending)
            pending = b""
            continue
        try:
            chunk = os.read(source, 1 << 16)
        except InterruptedError:
            continue
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        write(b"".join(line + b"\n" for line in lines if notices.keep(line)))
    if pending and notices.keep(pending):
        write(pending)


@contextlib.contextmanager
def native_notices_filtered(enabled: bool = True) -> Iterator[None]:
    """Inside: this process's file descriptor 2 goes through a filter process that drops ``NATIVE_NOTICES``.

    Python's own lines pass through it unchanged. A child process (this module
    run as a script), not a thread: C++ code writes to fd 2 while holding the
    GIL, and a thread that needs the GIL to drain the pipe could then never
    run. It ignores the terminal's Ctrl-C (its own session) and ends when the
    last writer closes the pipe, so nothing written before a crash is lost.
    On the way out fd 2 is put back and the filter's last lines are waited for.
    """
    if not enabled:
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    read, write = os.pipe()
    try:
        child = subprocess.Popen([sys.executable, "-I", "-S", os.path.abspath(__file__)], stdin=read,
                                 stdout=saved, stderr=saved, close_fds=True, start_new_session=True)
    except OSError:
        for fd in (read, write, saved):
            os.close(fd)
        yield
        return
    os.close(read)
    sys.stderr.flush()
    os.dup2(write, 2)
    os.close(write)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        with contextlib.suppress(subprocess.TimeoutExpired):  # a process we started still holds the pipe
            child.wait(timeout=5)


if __name__ == "__main__":
    filter_stream(sys.stdin.fileno(), sys.stdout.fileno())

"""Keep third-party start-up noise off stderr unless the user asks for it (``uar-stream --verbose``).

Starting a MediaPipe graph makes its C++ (TFLite, absl) write INFO and WARNING lines straight
to file descriptor 2 from the graph's own threads, and protobuf warns that ``GetPrototype`` is
deprecated. mediapipe 0.10.14 logs through absl, which reads no environment variable
(``GLOG_minloglevel``, ``TF_CPP_MIN_LOG_LEVEL`` and ``ABSL_MIN_LOG_LEVEL`` were all tried), so
:func:`third_party_quiet` points fd 2 at a temporary file for the block and, when the block ends,
writes back every captured line except the known noise below; if the block raises, it writes
back everything. Nothing is lost: output of other threads in that window is delayed, not dropped.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator

#: Lines that MediaPipe's graph start-up (and OpenCV's dnn) print and that say nothing a user can act on.
NOISE = tuple(re.compile(p) for p in (
    rb"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.",
    rb"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    rb"^I\d{4} [\d:.]+ +\d+ \S+:\d+\] ",  # any absl/glog INFO line
    rb"^W\d{4} [\d:.]+ +\d+ inference_feedback_manager\.cc:\d+\] Feedback manager requires a model "
    rb"with a single signature",
    # OpenCV 5's dnn, once per cv2.FaceDetectorYN (pipeline/yunet.py): the CPU runs it either way
    rb"^\[ WARN:\d+@[\d.]+\] global net_impl_backend\.cpp:\d+ setPreferableTarget Targets are not "
    rb"supported by the new graph engine",
))

_verbose = False
_lock = threading.RLock()  # fd 2 is process-wide: one capture at a time
_depth = 0


def set_verbose(on: bool) -> None:
    """``True``: :func:`third_party_quiet` lets everything through (the CLI's ``--verbose``)."""
    global _verbose
    _verbose = bool(on)


def ignore_known_warnings() -> None:
    """Ignore protobuf's ``GetPrototype`` deprecation warning (raised inside mediapipe, not ours).

    Scoped to the module that raises it; idempotent (``warnings`` drops a duplicate filter).
    """
    warnings.filterwarnings("ignore", message=r"SymbolDatabase\.GetPrototype\(\) is deprecated",
                            category=UserWarning, module=r"google\.protobuf\.symbol_database")


@contextlib.contextmanager
def third_party_quiet() -> Iterator[None]:
    """Run the block with fd 2 captured; afterwards write back all but the :data:`NOISE` lines.

    Verbose: a no-op. A nested block shares the outer capture; a block in another thread waits
    for it. If fd 2 cannot be duplicated (no stderr), the block runs uncaptured.
    """
    global _depth
    if _verbose:
        yield
        return
    ignore_known_warnings()
    with _lock:
        if _depth:
            _depth += 1
            try:
                yield
            finally:
                _depth -= 1
            return
        try:
            saved = os.dup(2)
        except OSError:
            yield
            return
        _depth = 1
        try:
            with tempfile.TemporaryFile() as tmp:
                _flush()
                os.dup2(tmp.fileno(), 2)
                failed = True
                try:
                    yield
                    failed = False
                finally:
                    _flush()
                    os.dup2(saved, 2)
                    tmp.seek(0)
                    _write_back(tmp.read(), keep_noise=failed)
        finally:
            os.close(saved)
            _depth = 0


def _flush() -> None:
    for stream in {id(s): s for s in (sys.stderr, sys.__stderr__) if s is not None}.values():
        with contextlib.suppress(Exception):
            stream.flush()


def _write_back(captured: bytes, keep_noise: bool) -> None:
    lines = captured.splitlines(keepends=True)
    if not keep_noise:
        lines = [ln for ln in lines if not any(p.match(ln) for p in NOISE)]
    data = b"".join(lines)
    while data:  # os.write may write less than asked
        data = data[os.write(2, data):]

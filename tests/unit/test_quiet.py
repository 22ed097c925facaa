"""uar_stream.quiet: fd-2 capture that drops known third-party noise and keeps everything else."""
import os
import warnings

import pytest

from uar_stream import quiet

NOISE = (b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
         b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
         b"I0000 00:00:1796157609.347296    7963 gl_context.cc:357] GL version: 3.2\n"
         b"W0000 00:00:1796157609.347296    7963 inference_feedback_manager.cc:114] Feedback manager "
         b"requires a model with a single signature inference. Disabling support for feedback tensors.\n")
REAL = (b"E0000 00:00:1796157609.347296    7963 calculator_graph.cc:887] INVALID_ARGUMENT: bad graph\n",
        b"W0000 00:00:1796157609.347296    7963 other.cc:1] a warning we do not know\n",
        b"plain text without a newline")


@pytest.fixture(autouse=True)
def _not_verbose():
    quiet.set_verbose(False)
    yield
    quiet.set_verbose(False)


def _write_mixed():
    os.write(2, REAL[0])
    os.write(2, NOISE)
    os.write(2, REAL[1])
    os.write(2, REAL[2])


def test_noise_is_dropped_and_other_lines_kept_in_order(capfd):
    inode = os.fstat(2).st_ino
    with quiet.third_party_quiet():
        assert os.fstat(2).st_ino != inode  # fd 2 really points elsewhere inside
        _write_mixed()
    assert os.fstat(2).st_ino == inode
    os.write(2, b"after\n")
    assert capfd.readouterr().err == b"".join(REAL).decode() + "after\n"


def test_a_failing_block_writes_back_everything_and_raises(capfd):
    with pytest.raises(RuntimeError, match="graph failed"):
        with quiet.third_party_quiet():
            _write_mixed()
            raise RuntimeError("graph failed")
    err = capfd.readouterr().err
    assert err == (REAL[0] + NOISE + REAL[1] + REAL[2]).decode()


def test_nested_blocks_share_one_capture(capfd):
    with quiet.third_party_quiet():
        with quiet.third_party_quiet():
            os.write(2, NOISE + REAL[0])
        os.write(2, REAL[1])
    assert capfd.readouterr().err == (REAL[0] + REAL[1]).decode()


def test_verbose_lets_everything_through_uncaptured(capfd):
    quiet.set_verbose(True)
    inode = os.fstat(2).st_ino
    with quiet.third_party_quiet():
        assert os.fstat(2).st_ino == inode
        os.write(2, NOISE)
    assert capfd.readouterr().err == NOISE.decode()


def test_protobuf_deprecation_is_ignored_only_where_protobuf_raises_it():
    msg = "SymbolDatabase.GetPrototype() is deprecated. Please use message_factory.GetMessageClass()"
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet.ignore_known_warnings()
        warnings.warn_explicit(msg, UserWarning, "symbol_database.py", 55,
                               module="google.protobuf.symbol_database")
        warnings.warn_explicit(msg, UserWarning, "ours.py", 1, module="uar_stream.ours")
        warnings.warn_explicit("something else", UserWarning, "symbol_database.py", 60,
                               module="google.protobuf.symbol_database")
    assert [(w.filename, str(w.message)) for w in seen] == [("ours.py", msg),
                                                            ("symbol_database.py", "something else")]

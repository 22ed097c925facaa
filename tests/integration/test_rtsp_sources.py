"""Sources and capture: buffer policies, stream timeouts, reconnect with backoff (real RTSP)."""
import threading
import time

import pytest

from uar_stream.config import SourceConfig
from uar_stream.errors import SourceError
from uar_stream.flow import Event, Frame
from uar_stream.pipeline.capture import (
    EndOfStream,
    FrameBuffer,
    ReconnectingReader,
    capture_loop,
    resolve_policy,
)
from uar_stream.pipeline.sources import is_live_spec, open_source, redact

from tests.support.live import RtspServer

pytest.importorskip("aio_rtsp_toolkit.server")


def _frames(media, n):
    src = open_source(media / "pyfeat_single_face.mp4")
    out = [src.read() for _ in range(n)]
    src.close()
    return out


def test_policy_resolution_per_source_type():
    assert resolve_policy("auto", is_live=True) == "newest_only"
    assert resolve_policy("auto", is_live=False) == "wait"
    assert resolve_policy("drop_oldest", is_live=False) == "drop_oldest"
    assert is_live_spec("0") and is_live_spec("rtsp://h/x") and is_live_spec("https://h/x.m3u8")
    assert not is_live_spec("/tmp/a.mp4") and not is_live_spec("file:///tmp/a.mp4")


def test_drop_policies_keep_the_newest_frames_and_count_drops(media):
    frames = _frames(media, 6)
    newest = FrameBuffer("newest_only", 4)
    oldest = FrameBuffer("drop_oldest", 3)
    for f in frames:
        assert newest.put(f) and oldest.put(f)
    newest.put(EndOfStream(), is_frame=False)  # control items are never dropped
    assert newest.dropped == 5 and oldest.dropped == 3
    assert [newest.get()[1].index for _ in range(1)] == [5]
    assert isinstance(newest.get()[1], EndOfStream)
    assert [oldest.get()[1].index for _ in range(3)] == [3, 4, 5]
    assert oldest.get(timeout=0.01) == (False, None)


def test_wait_policy_blocks_the_producer_and_loses_nothing(media):
    frames = _frames(media, 20)
    buf = FrameBuffer("wait", 2)
    got = []

    def consume():
        while len(got) < 20:
            ok, item = buf.get(0.5)
            if ok:
                got.append(item.index)
                time.sleep(0.005)  # a slow consumer

    t = threading.Thread(target=consume)
    t.start()
    for f in frames:
        assert buf.put(f)
        assert buf._frames <= 2  # back-pressure: never more than the buffer size
    t.join(timeout=10)
    assert got == list(range(20)) and buf.dropped == 0


def test_closing_the_buffer_releases_a_blocked_producer(media):
    f = _frames(media, 1)[0]
    buf = FrameBuffer("wait", 1)
    buf.put(f)
    result = []
    t = threading.Thread(target=lambda: result.append(buf.put(f)))
    t.start()
    time.sleep(0.2)
    assert t.is_alive()
    buf.close()
    t.join(timeout=2)
    assert result == [False]


def test_credentials_are_redacted_in_open_errors():
    assert redact("rtsp://admin:hunter2@cam.local:554/live") == "rtsp://***@cam.local:554/live"
    port = _closed_port()
    with pytest.raises(SourceError) as e:
        open_source(f"rtsp://admin:hunter2@127.0.0.1:{port}/x", SourceConfig(open_timeout_s=2))
    assert "hunter2" not in str(e.value) and "admin" not in str(e.value) and "://***@" in str(e.value)


def _closed_port():
    from tests.support.live import free_port

    return free_port()  # nothing listens there


@pytest.mark.slow
def test_reader_reconnects_with_backoff_then_gives_up(tmp_path, media):
    cfg = SourceConfig(reconnect_attempts=3, backoff_initial_s=0.2, backoff_max_s=0.4,
                       open_timeout_s=2, read_timeout_s=2)
    with RtspServer(tmp_path / "srv", [media / "pyfeat_single_face.mp4"]) as srv:
        reader = ReconnectingReader(srv.url("pyfeat_single_face.mp4", userinfo="u:pw"), cfg)
        assert reader.is_live
        first = [reader.next() for _ in range(10)]
        assert all(isinstance(f, Frame) for f in first)
        srv.kill()
        t_kill = time.monotonic()
        item = reader.next()
        while isinstance(item, Frame):  # frames FFmpeg had already buffered
            item = reader.next()
        assert isinstance(item, Event) and item.kind == "stream_lost"
        assert time.monotonic() - t_kill < 4.0  # noticed within seconds, not minutes
        srv.start()
        restored = reader.next()
        assert restored.kind == "stream_restored" and restored.fields["attempts"] >= 1
        f = reader.next()
        assert isinstance(f, Frame) and f.index == restored.fields["next_frame"]
        srv.kill()
        while isinstance(reader.next(), Frame):
            pass
        t0 = time.monotonic()
        with pytest.raises(SourceError, match="not restored after 3 reconnect attempts") as e:
            reader.next()
        # backoff 0.2 + 0.4 + 0.4 (capped), plus three refused opens
        assert 0.9 < time.monotonic() - t0 < 8.0
        assert "pw@" not in str(e.value)
        reader.close()


@pytest.mark.slow
def test_a_hung_server_is_lost_within_the_read_timeout(tmp_path, media):
    """SIGSTOP: the TCP connection stays up but nothing arrives (a network cut)."""
    cfg = SourceConfig(reconnect_attempts=0, read_timeout_s=1.5, open_timeout_s=2)
    with RtspServer(tmp_path / "srv", [media / "lp_driving_d18.mp4"]) as srv:
        reader = ReconnectingReader(srv.url("lp_driving_d18.mp4"), cfg)
        buf = FrameBuffer("newest_only", 1)
        t = threading.Thread(target=capture_loop, args=(reader, buf), daemon=True)
        t.start()
        time.sleep(1.0)
        srv.pause()
        t_pause = time.monotonic()
        items = []
        while time.monotonic() - t_pause < 15:
            ok, item = buf.get(0.2)
            if ok and not isinstance(item, Frame):
                items.append(item)
                if isinstance(item, EndOfStream):
                    break
        t.join(timeout=5)
        assert [type(i).__name__ for i in items] == ["Event", "EndOfStream"]
        assert isinstance(items[1].error, SourceError)
        # lost after the buffered frames run out plus the 1.5 s read timeout
        assert time.monotonic() - t_pause < 8.0

"""The finished-video check that stands in for OpenCV's silent writer: a whole mp4/avi passes;
one cut short (no moov index, a cut box, a short RIFF) or empty is named as such."""
import numpy as np
import pytest

from uar_stream.pipeline.sinks.video import VideoWriter, video_problem


@pytest.fixture(params=[("o.mp4", "mp4v"), ("o.avi", "MJPG")], ids=["mp4", "avi"])
def video(tmp_path, request):
    name, codec = request.param
    w = VideoWriter(tmp_path / name, 10.0, codec)
    rng = np.random.default_rng(0)
    for _ in range(12):
        w.write(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
    w.close()
    return tmp_path / name


def test_a_whole_video_passes(video):
    assert video_problem(video) is None


@pytest.mark.parametrize("keep", [0.5, 0.95])
def test_a_video_cut_short_is_named(video, keep):
    data = video.read_bytes()
    video.write_bytes(data[: int(len(data) * keep)])
    assert "incomplete" in video_problem(video) or "not readable" in video_problem(video)


def test_an_empty_file_and_a_missing_one(tmp_path):
    (tmp_path / "e.mp4").write_bytes(b"")
    assert video_problem(tmp_path / "e.mp4") == "the file is empty"
    assert video_problem(tmp_path / "none.mp4")  # No such file or directory


def test_an_output_that_got_no_frame_is_removed(tmp_path):
    w = VideoWriter(tmp_path / "o.mp4", 10.0)
    assert (tmp_path / "o.mp4").exists()  # touched at open: an unwritable path fails early
    w.close()
    assert not (tmp_path / "o.mp4").exists()

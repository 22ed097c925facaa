"""The sink protocol: a user's sink sees open, every result in order, and close with the
summary; one failing sink does not stop the others; drawing happens once per frame."""
import json

import pytest

from uar_stream import Analyzer, RunSummary, SinkError, StreamInfo, StreamResult, load_config
from uar_stream.backends import create_engine
from uar_stream.pipeline.run import run
from uar_stream.pipeline.sinks import outputs_for
from uar_stream.pipeline.sinks.drawing import FrameDrawer
from uar_stream.pipeline.sinks.video import AnnotatedVideoSink

from tests.support.live import SlowEngine, make_tiny_model

CLIP = "pyfeat_single_face.mp4"  # 72 frames, one face


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


class Recorder:
    """A user's sink: records what it was handed."""

    def __init__(self, fail_on_close=False):
        self.info, self.results, self.summary = None, [], None
        self.fail_on_close = fail_on_close

    def open(self, info: StreamInfo) -> None:
        self.info = info

    def write(self, result: StreamResult) -> None:
        self.results.append(result)

    def close(self, summary: RunSummary) -> None:
        self.summary = summary
        if self.fail_on_close:
            raise SinkError("recorder: disk gone")


def _analyzer(model_dir, **kw):
    return Analyzer(load_config({"model": {"path": str(model_dir)}}), **kw)


def test_a_user_sink_sees_every_frame_and_the_summary(media, model_dir):
    rec = Recorder()
    with _analyzer(model_dir) as an:
        with an.stream(str(media / CLIP), sinks=[rec]) as stream:
            got = [r.index for r in stream]
    assert rec.info is not None and rec.info.frame_count == 72 and rec.info.model_id == an.model_id
    assert [r.index for r in rec.results] == got == list(range(72))
    s = rec.summary
    assert s is stream.summary and s.frames == 72 and s.faces == sum(len(r.faces) for r in rec.results)
    assert sum(s.routes.values()) == s.faces and s.error is None and not s.interrupted
    # the track still alive at the end ends in the summary's final events, not in a result
    assert [e.kind for e in s.final_events] == ["track_ended"]
    # the first event is the track starting, once it has min_hits frames
    assert next(e for r in rec.results for e in r.events).kind == "track_started"


def test_a_failing_sink_does_not_stop_the_others(tmp_path, media, model_dir):
    bad, good = Recorder(fail_on_close=True), Recorder()
    ev = tmp_path / "e.jsonl"
    sinks = [bad, *outputs_for(load_config(None), events=ev, summary=False), good]
    with _analyzer(model_dir) as an:
        with pytest.raises(SinkError, match="disk gone"):
            run(an, str(media / CLIP), sinks, progress=False)
    assert good.summary is not None and good.summary.frames == 72
    last = json.loads(ev.read_text().splitlines()[-1])
    assert last["event"] == "run_ended" and last["error"] == "recorder: disk gone"


def test_frames_are_drawn_once_for_all_pixel_sinks(tmp_path, media, model_dir):
    calls = []

    class CountingOverlay:
        def annotate(self, frame, faces, fps=None):
            calls.append(len(faces))
            return frame

    drawer = FrameDrawer(CountingOverlay())
    sinks = [AnnotatedVideoSink(tmp_path / "a.mp4", drawer), AnnotatedVideoSink(tmp_path / "b.mp4", drawer)]
    with _analyzer(model_dir) as an:
        s = run(an, str(media / CLIP), sinks, progress=False)
    assert len(calls) == s.frames == 72
    assert (tmp_path / "a.mp4").stat().st_size > 0 and (tmp_path / "b.mp4").stat().st_size > 0


def test_shown_fps_is_frames_per_second_of_wall_time(media, model_dir):
    # One frame per engine call that sleeps 50 ms: no more than 20 frames can pass per second.
    engine = SlowEngine(create_engine(model_dir), 0.05)
    with _analyzer(model_dir, engine=engine) as an:
        with an.stream(str(media / CLIP), pipelined=False) as stream:
            fps = [r.fps for r in stream if r.fps is not None]
    assert fps and max(fps) <= 21.0 and engine.calls == 72

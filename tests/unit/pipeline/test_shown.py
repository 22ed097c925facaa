"""What is shown is what is meant: the label is the top class of the distribution shown with it,
the FPS is frames per second of wall time, the summary counts only labels that were shown."""
import numpy as np
import pytest

from uar_stream.config import TrackingConfig
from uar_stream.flow import FaceResult, Frame, Route, RunSummary, StreamResult
from uar_stream.pipeline.routing import Router
from uar_stream.pipeline.sinks.summary import summary_text
from uar_stream.pipeline.stream import RateMeter
from uar_stream.pipeline.tracking import FaceTracker

CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
ROUTER = Router(tau_epistemic=0.05, tau_aleatoric=0.9)


def _face(probs, aleatoric=0.3, epistemic=0.01, route=None, reason=None, box=(100, 100, 200, 200)):
    p = np.asarray(probs, np.float32)
    k = int(np.argmax(p))
    route = route or ROUTER.route(aleatoric, epistemic)
    return FaceResult(box=box, landmarks=np.zeros((6, 2), np.float32), detection_score=0.9, probs=p,
                      label=CLASSES[k], confidence=float(p[k]), aleatoric=aleatoric, epistemic=epistemic,
                      total=aleatoric + epistemic, route=route, classes=CLASSES, reason=reason)


def _dist(top, p_top, second=0):
    p = np.full(8, (1 - p_top - 0.1) / 6, np.float32)
    p[top], p[second if second != top else (top + 1) % 8] = p_top, 0.1
    return p


def _consistent(f: FaceResult) -> bool:
    k = int(np.argmax(f.probs))
    return f.label == CLASSES[k] and f.confidence == pytest.approx(float(f.probs[k]))


def test_shown_label_is_the_top_class_of_the_shown_distribution_under_hysteresis():
    tr = FaceTracker(TrackingConfig(hysteresis_frames=3, min_hits=1), ROUTER, CLASSES)
    # neutral for 10 frames, then happiness jumps up: the EMA passes it within two frames,
    # and the hysteresis holds the old label for a few more.
    seq = [_dist(0, 0.8)] * 10 + [_dist(1, 0.85)] * 10 + [_dist(0, 0.5, 1), _dist(1, 0.5, 0)] * 5
    labels = []
    for i, p in enumerate(seq):
        out, _ = tr.update([_face(p)], i, i / 30)
        assert _consistent(out[0]), (i, out[0].label, out[0].probs)
        labels.append(out[0].label)
    assert labels[10] == "neutral" and labels[19] == "happiness"  # delayed, then changed
    flips = sum(a != b for a, b in zip(labels, labels[1:], strict=False))
    assert flips <= 2  # the alternating tail does not flicker


def test_a_quality_gate_keeps_its_reason_through_the_tracker():
    tr = FaceTracker(TrackingConfig(hysteresis_frames=1, min_hits=1), ROUTER, CLASSES)
    out, _ = tr.update([_face(_dist(1, 0.9), route=Route.OUT_OF_DISTRIBUTION, reason="pose")], 0, 0.0)
    assert out[0].route is Route.OUT_OF_DISTRIBUTION and out[0].reason == "pose"
    out, _ = tr.update([_face(_dist(1, 0.9))], 1, 0.03)
    assert out[0].route is Route.CONFIDENT and out[0].reason is None


def test_rate_meter_is_frames_per_second_of_wall_time_even_in_bursts():
    now = [0.0]
    meter = RateMeter(clock=lambda: now[0])
    rates = []
    for batch in range(60):  # 4 frames a millisecond apart every 0.1 s: 40 frames per second
        for j in range(4):
            now[0] = batch * 0.1 + j * 0.001
            rates.append(meter.tick())
    shown = [r for r in rates if r is not None]
    assert rates[0] is None and rates[3] is None  # one burst is no rate yet
    assert shown and all(36 <= r <= 44 for r in shown[-200:]) and max(shown) < 60


def test_summary_counts_labels_only_where_one_was_shown():
    s = RunSummary(source="x")
    faces = [_face(_dist(1, 0.9)), _face(_dist(1, 0.9)),
             _face(_dist(0, 0.45, 3), aleatoric=1.5),  # ambiguous: shows "neutral | sadness"
             _face(_dist(2, 0.9), epistemic=0.5),  # rejected by the model
             _face(_dist(2, 0.9), route=Route.OUT_OF_DISTRIBUTION, reason="too_dark")]
    s.add(StreamResult(Frame(0, np.zeros((4, 4, 3), np.uint8), 0.0, 0.0), faces))
    assert s.labels == {"happiness": 2}
    assert s.ambiguous_pairs == {"neutral | sadness": 1}
    assert s.rejected == {"epistemic": 1, "too_dark": 1}
    assert s.routes == {"confident": 2, "ambiguous": 1, "out_of_distribution": 2}
    text = summary_text(s)
    assert "labels shown (confident faces): happiness 2" in text
    assert "ambiguous (top two shown): neutral | sadness 1" in text and "too_dark 1" in text
    assert s.to_dict()["ambiguous_pairs"] == {"neutral | sadness": 1}


@pytest.mark.slow
def test_no_shown_label_differs_from_its_distribution_over_a_video(media, analyzer):
    # The shipped model on a whole shared video, tracking on (defaults: smoothing, hysteresis).
    events = []
    with analyzer.stream(str(media / "lp_driving_d3.mp4"), tracking=True) as stream:
        shown = []
        for r in stream:
            shown += [(r.index, f) for f in r.faces]
            events += [(r.index, e, {f.track_id: f for f in r.faces}) for e in r.events]
    assert len(shown) >= 300
    bad = [(i, f.label, f.top(1)) for i, f in shown if not _consistent(f)]
    assert bad == []
    for _, e, by_id in events:  # track events name the label shown on that frame
        if e.kind in ("track_started", "route_changed"):
            assert e.fields["label"] == by_id[e.fields["track_id"]].label
    labels = {f.label for _, f in shown if f.route is Route.CONFIDENT}
    assert labels  # something was shown with a label

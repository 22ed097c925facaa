"""Tracking: ids across frames, scene cuts, smoothing + hysteresis against route flicker."""
import dataclasses
import itertools
import shutil

import numpy as np
import pytest

from uar_stream import Analyzer, load_config
from uar_stream.config import TrackingConfig
from uar_stream.flow import FaceResult, Route
from uar_stream.pipeline.routing import Router
from uar_stream.pipeline.sources import open_source
from uar_stream.pipeline.tracking import FaceTracker, iou_matrix

from tests.support.live import make_tiny_model

CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
ROUTER = Router(tau_epistemic=0.05, tau_aleatoric=0.9)
HAMILTON_CUTS = (20, 82, 211)  # MANIFEST.md: hard cuts at these frames


def _face(box, aleatoric=0.2, epistemic=0.01, label=1):
    p = np.full(8, 0.02, np.float32)
    p[label] = 1 - 0.02 * 7
    return FaceResult(box=tuple(int(v) for v in box), landmarks=np.zeros((6, 2), np.float32),
                      detection_score=0.9, probs=p, label=CLASSES[label], confidence=float(p[label]),
                      aleatoric=aleatoric, epistemic=epistemic, total=aleatoric + epistemic,
                      route=ROUTER.route(aleatoric, epistemic), classes=CLASSES)


def test_iou_matrix():
    m = iou_matrix([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    assert np.allclose(m, [[1.0, 50 / 150, 0.0]])


def test_ids_follow_two_walking_faces_through_a_missed_detection():
    tr = FaceTracker(TrackingConfig(), ROUTER, CLASSES)
    ids = []
    for i in range(30):
        a = _face((100 + 6 * i, 100, 160 + 6 * i, 160))
        b = _face((500 - 6 * i, 120, 560 - 6 * i, 180))
        faces = [b, a] if i % 2 else [a, b]  # detector order is arbitrary
        if 10 <= i < 13:
            faces = [a]  # b missed for 3 frames
        out, _ = tr.update(faces, i, i / 30)
        ids.append({f.box[1] == 100: f.track_id for f in out})
    assert all(v is None for d in ids[:2] for v in d.values())  # tentative: min_hits = 3
    ids = ids[2:]
    assert {d[True] for d in ids} == {1} and {d[False] for d in ids if False in d} == {2}
    assert tr.total_tracks == 2


def test_hysteresis_and_smoothing_stop_a_flickering_route_and_report_changes():
    cfg = TrackingConfig(smoothing="ema", alpha=0.4, hysteresis_frames=3)
    tr = FaceTracker(cfg, ROUTER, CLASSES)
    raw = FaceTracker(dataclasses.replace(cfg, smoothing="off", hysteresis_frames=1), ROUTER, CLASSES)
    box = (100, 100, 200, 200)
    # aleatoric alternates around tau_aleatoric (0.9) for 20 frames, then stays high
    seq = [1.1 if i % 2 else 0.7 for i in range(20)] + [1.5] * 10
    routes, raw_routes, events = [], [], []
    for i, a in enumerate(seq):
        out, ev = tr.update([_face(box, aleatoric=a)], i, i / 10)
        routes.append(out[0].route)
        events += ev
        raw_routes.append(raw.update([_face(box, aleatoric=a)], i, i / 10)[0][0].route)
    flips = sum(x != y for x, y in itertools.pairwise(routes))
    raw_flips = sum(x != y for x, y in itertools.pairwise(raw_routes))
    assert raw_flips == 19 and flips == 1 and routes[-1] is Route.AMBIGUOUS
    changed = [e for e in events if e.kind == "route_changed"]
    assert len(changed) == 1
    assert (changed[0].fields["from"], changed[0].fields["to"]) == ("confident", "ambiguous")
    assert changed[0].fields["aleatoric"] > 0.9  # the smoothed value that crossed the threshold
    end = tr.finish()
    assert end[0].kind == "track_ended" and end[0].fields["frames"] == 30
    route_seconds = sum(end[0].fields["route_seconds"].values())
    assert route_seconds == pytest.approx(end[0].fields["duration_s"], abs=1e-3)


@pytest.fixture(scope="module")
def tiny_analyzer(tmp_path_factory):
    d = make_tiny_model(tmp_path_factory.mktemp("model") / "tiny")
    with Analyzer(load_config({"model": {"path": str(d)}})) as an:
        yield an


def _raw_results(an, path, max_frames=0):
    """(frame index, t, image, per-frame results) for every frame (or the first max_frames)."""
    src = open_source(path)
    out = []
    while (f := src.read()) is not None and not (max_frames and len(out) >= max_frames):
        out.append((f.index, f.timestamp_s, f.image, an.classify([an.detect(f.image)])[0]))
    src.close()
    return out


def _track(an, raw, **over):
    cfg = dataclasses.replace(an.config.tracking, **over)
    tr = FaceTracker(cfg, an.router, an.classes)
    spans, events = {}, []
    for i, t, img, faces in raw:
        out, ev = tr.update(faces, i, t, img)
        events += ev
        for f in out:
            if f.track_id is not None:  # tentative faces (before min_hits) have no id
                spans.setdefault(f.track_id, []).append((i, f))
    events += tr.finish()
    return spans, events


@pytest.mark.slow
def test_tracks_on_a_clip_with_scene_cuts(media, tiny_analyzer):
    raw = _raw_results(tiny_analyzer, media / "fr_short_hamilton_clip.mp4")
    spans, events = _track(tiny_analyzer, raw)
    bounds = (0,) + HAMILTON_CUTS + (len(raw),)
    for frames in spans.values():  # no id lives on both sides of a cut
        first, last = frames[0][0], frames[-1][0]
        assert not any(first < c <= last for c in HAMILTON_CUTS)
    assert sum(e.fields.get("reason") == "scene_cut" for e in events) >= 3
    long = {k: v for k, v in spans.items() if len(v) >= 5}
    per_scene = [sum(bounds[s] <= v[0][0] < bounds[s + 1] for v in long.values()) for s in range(4)]
    # A person counts 2, ~6, 1 and 4-6 faces in the four shots.
    assert per_scene[2] == 1 and all(n <= c for n, c in zip(per_scene, (2, 6, 1, 6), strict=True))
    print(f"\nhamilton: {len(spans)} ids, {len(long)} with >= 5 frames, per shot {per_scene}")


@pytest.mark.slow
def test_walking_crowd_ids_do_not_fragment(media, tiny_analyzer):
    raw = _raw_results(tiny_analyzer, media / "facenet_video.mp4")
    spans, _ = _track(tiny_analyzer, raw)
    # A split id shows as a track that starts where another ended a few frames before.
    ends = [(v[-1][0], v[-1][1].box) for v in spans.values()]
    splits = 0
    for v in spans.values():
        start, box = v[0][0], v[0][1].box
        splits += any(0 < start - e <= 15 and iou_matrix([box], [eb])[0, 0] > 0.3 for e, eb in ends)
    longest = max(len(v) for v in spans.values())
    faces = sum(len(r) for *_, r in raw)
    assert splits == 0
    assert longest >= 0.75 * len(raw)  # the boy in the blue hood, detected most of the clip
    print(f"\nfacenet: {len(spans)} ids for {faces} detections in {len(raw)} frames; "
          f"{sum(len(v) >= 5 for v in spans.values())} with >= 5 frames; longest {longest}")


def _flips_per_track_second(spans, fps):
    flips = sum(sum(a.route != b.route for (_, a), (_, b) in itertools.pairwise(v)) for v in spans.values())
    seconds = sum(len(v) for v in spans.values()) / fps
    return flips / seconds


@pytest.mark.slow
@pytest.mark.parametrize("clip", ["fr_short_hamilton_clip.mp4",
                                  "pyfeat_WolfgangLanger_Pexels.mp4"])
def test_smoothing_reduces_route_flips(media, default_model, clip, tmp_path):
    """With the shipped model; thresholds set at the clip's median uncertainties so that
    many faces sit near a threshold (the worst case for flicker)."""
    model = shutil.copytree(default_model, tmp_path / "model")  # engine caches go there
    with Analyzer(load_config({"model": {"path": str(model)}})) as an:
        raw = _raw_results(an, media / clip, max_frames=240)  # 8-10 s: keep CI short
        faces = [f for *_, r in raw for f in r]
        an.router = Router(float(np.median([f.epistemic for f in faces])),
                           float(np.median([f.aleatoric for f in faces])))
        raw = [(i, t, img, [dataclasses.replace(f, route=an.router.route(f.aleatoric, f.epistemic))
                            for f in r]) for i, t, img, r in raw]
        fps = open_source(media / clip).fps
        off = _flips_per_track_second(_track(an, raw, smoothing="off", hysteresis_frames=1)[0], fps)
        on = _flips_per_track_second(_track(an, raw)[0], fps)
    print(f"\n{clip}: route flips per track-second {off:.2f} raw -> {on:.2f} smoothed")
    assert off > 0 and on < 0.5 * off

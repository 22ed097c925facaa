"""`uar-stream serve` end to end: the real CLI on loopback with two shared videos and one RTSP
stream (a real server on loopback), every endpoint over real HTTP, the dashboard in headless
Chromium (Debian's package driven by Playwright), and SIGTERM with open browser connections."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.support.live import RtspServer, free_port, make_tiny_model

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("aio_rtsp_toolkit.server")

TOKEN = "t0ken-for-tests"
CREDS = "admin:hunter2"
CLIPS = {"clip": "lp_driving_d18.mp4", "short": "pyfeat_single_face.mp4"}
CHROMIUM = "/usr/bin/chromium"


def _wait_for(cond, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(what() if callable(what) else what)
        time.sleep(0.1)


class Service:
    def __init__(self, proc, port, events):
        self.proc, self.port, self.events = proc, port, events
        self.base = f"http://127.0.0.1:{port}"

    def request(self, path, token=TOKEN, method="GET", body=None, bearer=True, timeout=10):
        url = self.base + path
        headers = {}
        if token is not None and bearer:
            headers["Authorization"] = f"Bearer {token}"
        elif token is not None:
            url += ("&" if "?" in url else "?") + f"token={token}"
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def json(self, path, **kw):
        status, _, body = self.request(path, **kw)
        assert status == 200, (path, status, body)
        return json.loads(body)

    def open_stream(self, path):
        req = urllib.request.Request(self.base + path, headers={"Authorization": f"Bearer {TOKEN}"})
        return urllib.request.urlopen(req, timeout=10)


@pytest.fixture(scope="module")
def service(tmp_path_factory, media):
    tmp = tmp_path_factory.mktemp("serve")
    model = make_tiny_model(tmp / "tiny")
    with RtspServer(tmp / "rtsp", [media / CLIPS["clip"]]) as srv:
        events = {cid: tmp / f"{cid}.jsonl" for cid in ("clip", "short", "door")}
        cams = [{"id": cid, "source": str(media / name), "loop": True, "realtime": True,
                 "events": str(events[cid])} for cid, name in CLIPS.items()]
        cams.append({"id": "door", "source": srv.url(CLIPS["clip"], userinfo=CREDS),
                     "events": str(events["door"]), "record": str(tmp / "door.mp4")})
        cfg = tmp / "cameras.yaml"
        cfg.write_text(json.dumps({"model": {"path": str(model)},
                                   "events": {"faces": "every_n", "every_n": 10},
                                   "source": {"open_timeout_s": 2.0}, "cameras": cams}))
        port = free_port()
        env = {**os.environ, "UAR_STREAM_TOKEN": ""}
        proc = subprocess.Popen([sys.executable, "-m", "uar_stream.cli.main", "serve", "--config", str(cfg),
                                 "--port", str(port), "--token", TOKEN], cwd=tmp, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        svc = Service(proc, port, events)
        try:
            def up():
                assert proc.poll() is None, proc.communicate()[1]
                try:
                    return all(s["frames"] > 5 for s in svc.json("/api/streams")["streams"])
                except (OSError, AssertionError):
                    return False
            _wait_for(up, 90, "the service did not start")
            yield svc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)


def test_every_endpoint_needs_the_token(service):
    for path in ("/", "/health", "/metrics", "/api/streams", "/api/events", "/api/streams/clip/mjpeg",
                 "/api/streams/clip/snapshot.jpg"):
        assert service.request(path, token=None)[0] == 401, path
        assert service.request(path, token="wrong")[0] == 401, path
        assert service.request(path, token="wrong", bearer=False)[0] == 401, path
    status, headers, body = service.request("/health", token=None)
    assert headers["WWW-Authenticate"] == "Bearer" and json.loads(body) == {"error": "missing or wrong token"}
    assert service.request("/health", bearer=False)[0] == 200  # ?token= (for <img> and EventSource)


def test_streams_health_metrics_and_no_credentials_anywhere(service):
    # A stream shows a rate once it has run a quarter of a second past its first burst.
    _wait_for(lambda: all(s["fps"] > 0 for s in service.json("/api/streams")["streams"]), 30,
              "a camera with no frame rate")
    streams = service.json("/api/streams")
    by_id = {s["id"]: s for s in streams["streams"]}
    assert set(by_id) == {"clip", "short", "door"}
    door = by_id["door"]
    assert door["source"].startswith("rtsp://***@127.0.0.1:") and door["state"] == "running"
    for s in by_id.values():
        assert s["fps"] > 0 and s["latency_ms_p95"] >= s["latency_ms_p50"] > 0 and s["dropped"] >= 0
    assert streams["batch"]["calls"] > 0
    assert service.json("/health") == {"status": "ok", "cameras": {c: "running" for c in by_id}}
    status, headers, body = service.request("/metrics")
    text = body.decode()
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line and not line.startswith("#")}
    for cid in by_id:
        assert samples[f'uar_frames_total{{camera="{cid}"}}'] > 0
        assert f'uar_latency_ms{{camera="{cid}",quantile="0.95"}}' in samples
        assert samples[f'uar_camera_state{{camera="{cid}",state="running"}}'] == 1
    assert samples["uar_batch_fill"] >= 1 and "uar_batch_queue_depth" in samples
    assert "# TYPE uar_routes_total counter" in text
    page = service.request("/")[2].decode()
    tracks = service.json("/api/streams/door/tracks")
    for answer in (json.dumps(streams), text, page, json.dumps(tracks)):
        assert "hunter2" not in answer and "admin" not in answer and TOKEN not in answer


def test_snapshot_and_mjpeg_show_the_annotated_frames(service):
    status, headers, body = service.request("/api/streams/clip/snapshot.jpg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR).shape == (480, 480, 3)
    assert service.request("/api/streams/nope/snapshot.jpg")[0] == 404
    with service.open_stream("/api/streams/short/mjpeg") as r:
        assert r.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
        parts = []
        for _ in range(2):
            assert r.readline() == b"--frame\r\n"
            head = {}
            while (line := r.readline()) != b"\r\n":
                k, v = line.decode().split(":", 1)
                head[k.strip()] = v.strip()
            assert head["Content-Type"] == "image/jpeg"
            parts.append(r.read(int(head["Content-Length"])))
            r.readline()
    imgs = [cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_COLOR) for p in parts]
    assert imgs[0].shape == (360, 640, 3) and not np.array_equal(imgs[0], imgs[1])  # newer frames


def _sse(service, path, n, timeout_s=20):
    got = []
    deadline = time.monotonic() + timeout_s
    with service.open_stream(path) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        while len(got) < n and time.monotonic() < deadline:
            line = r.readline().decode()
            if line.startswith("data: "):
                got.append(json.loads(line[6:]))
    return got


def test_events_arrive_over_sse_with_their_camera(service):
    one = _sse(service, "/api/events?stream=door", 3)
    assert len(one) == 3 and {e["camera"] for e in one} == {"door"}
    every = _sse(service, "/api/events", 40)
    assert {e["camera"] for e in every} == {"clip", "short", "door"}
    assert all({"camera", "event", "time"} <= set(e) for e in every)
    assert service.request("/api/events?stream=nope")[0] == 404


def test_bad_added_cameras_are_one_line_errors(service):
    status, _, body = service.request("/api/streams", method="POST", body={"id": "x", "source": "none.mp4"})
    assert status == 400 and json.loads(body) == {"error": "camera x: source: file not found: none.mp4"}
    status, _, body = service.request("/api/streams", method="POST",
                                      body={"id": "y", "source": f"rtsp://{CREDS}@127.0.0.1:{free_port()}/z"})
    err = json.loads(body)["error"]
    assert status == 400 and err.startswith("camera y: cannot open stream rtsp://***@127.0.0.1:")
    assert "hunter2" not in err and "\n" not in err
    status, _, body = service.request("/api/streams", method="POST",
                                      body={"id": "w", "source": "rtsp://h/x", "events": "/tmp/x.jsonl"})
    assert status == 400 and json.loads(body)["error"].startswith("events: cannot be set over HTTP")
    dup = {"id": "clip", "source": "rtsp://h/x"}
    assert service.request("/api/streams", method="POST", body=dup)[0] == 409
    assert service.request("/api/streams/nope", method="DELETE")[0] == 404
    assert {s["id"] for s in service.json("/api/streams")["streams"]} == {"clip", "short", "door"}


def _browser(p):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    return p.chromium.launch(executable_path=CHROMIUM, headless=True,
                             args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                   "--no-first-run"])


def test_dashboard_in_a_real_browser(service, media, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            assert page.goto(f"{service.base}/?token=wrong").status == 401
            assert page.goto(f"{service.base}/", wait_until="domcontentloaded").status == 401
            page.goto(f"{service.base}/?token={TOKEN}", wait_until="domcontentloaded")
            for cid in ("clip", "short", "door"):
                page.wait_for_selector(f"#cam-{cid} img.live", timeout=15000)
            page.wait_for_function("document.querySelectorAll('#feed li').length >= 3", timeout=15000)
            time.sleep(1.0)
            cams = ("clip", "short", "door")
            first = {cid: page.locator(f"#cam-{cid} img.live").screenshot() for cid in cams}
            time.sleep(1.0)
            for cid, shot in first.items():  # every camera's image advances
                assert page.locator(f"#cam-{cid} img.live").screenshot() != shot, cid
            feed = page.locator("#feed li").all_text_contents()
            assert any(" door " in t for t in feed) and any(" clip " in t for t in feed)
            assert "running" in page.locator("#cam-door .state").text_content()
            page.screenshot(path=str(os.environ.get("UAR_DASHBOARD_SHOT") or tmp_path / "dashboard.png"))
            # a camera added through the API appears; deleting it removes it
            status, _, _ = service.request("/api/streams", method="POST",
                                           body={"id": "extra", "source": str(media / CLIPS["short"]),
                                                 "loop": True, "realtime": True})
            assert status == 201
            page.wait_for_selector("#cam-extra img.live", timeout=15000)
            assert service.request("/api/streams/extra", method="DELETE")[0] == 200
            page.wait_for_selector("#cam-extra", state="detached", timeout=15000)
            assert page.locator(".cam").count() == 3
        finally:
            browser.close()


def test_sigterm_finalises_every_camera_with_browser_connections_open(service):
    mjpeg = service.open_stream("/api/streams/clip/mjpeg")
    sse = service.open_stream("/api/events")
    mjpeg.readline(), sse.readline()
    t0 = time.monotonic()
    service.proc.send_signal(signal.SIGTERM)
    out, err = service.proc.communicate(timeout=30)
    took = time.monotonic() - t0
    mjpeg.close(), sse.close()
    assert service.proc.returncode == 0, err
    assert took < 10, took
    for cid, path in service.events.items():
        last = json.loads(path.read_text().splitlines()[-1])
        assert last["event"] == "run_ended" and last["interrupted"] is True and last["frames"] > 0, cid
        assert f"[{cid}] interrupted:" in out

"""The HTTP layer of ``uar-stream serve`` on FastAPI, on top of a :class:`MultiStream`.

Endpoints (docs/serve.md): ``/`` dashboard, ``/api/streams`` (GET, POST), ``/api/streams/{id}``
(DELETE), ``.../mjpeg``, ``.../snapshot.jpg``, ``.../tracks``, ``/api/events`` (SSE),
``/health``, ``/metrics``. With a token, every endpoint needs it (``Authorization: Bearer``
or ``?token=``, the latter for ``<img>`` and ``EventSource``, which cannot set headers). No
answer carries a credential: sources are redacted and the page reads the token from its URL.
Streaming answers (MJPEG, SSE) never slow analysis: they read the latest frame / a bounded
queue, and end when ``stopping`` is set (shutdown) or their camera is removed.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import threading

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from uar_stream.errors import UarError
from uar_stream.serve import metrics
from uar_stream.serve.camera import Camera
from uar_stream.serve.dashboard import DASHBOARD_HTML
from uar_stream.serve.multistream import MultiStream
from uar_stream.serve.registry import CameraError

_NO_STORE = {"Cache-Control": "no-store"}
BOUNDARY = "frame"
#: Camera keys that name files the server writes: only CAMERAS.yaml may set them.
SERVER_FILES = ("record", "events")


def _token_check(token: str | None):
    async def check(request: Request) -> None:
        if not token:
            return
        given = request.query_params.get("token", "")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong token", headers={"WWW-Authenticate": "Bearer"})
    return check


def create_app(ms: MultiStream, token: str | None = None, stopping: threading.Event | None = None) -> FastAPI:
    """The ASGI app serving ``ms``; ``stopping`` ends the streaming answers at shutdown."""
    stop = stopping or threading.Event()
    app = FastAPI(title="uar-stream", docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=[Depends(_token_check(token))])

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)

    _add_status(app, ms)
    _add_cameras(app, ms)
    _add_live(app, ms, stop)
    return app


def _camera(ms: MultiStream, camera_id: str) -> Camera:
    try:
        return ms.get(camera_id)
    except CameraError as e:
        raise HTTPException(404, str(e)) from None


def _add_status(app: FastAPI, ms: MultiStream) -> None:
    """The page, health, metrics, the camera list."""

    @app.get("/", response_class=HTMLResponse)
    async def dashboard() -> HTMLResponse:
        return HTMLResponse(DASHBOARD_HTML, headers=_NO_STORE)

    @app.get("/health")
    async def health() -> JSONResponse:
        cams = {c.id: c.state for c in ms.cameras()}
        ok = all(s in ("starting", "running", "ended") for s in cams.values())
        return JSONResponse({"status": "ok" if ok else "degraded", "cameras": cams}, headers=_NO_STORE)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(ms), media_type=metrics.CONTENT_TYPE, headers=_NO_STORE)

    @app.get("/api/streams")
    async def streams() -> JSONResponse:
        b = ms.stats()
        return JSONResponse({"streams": [c.status() for c in ms.cameras()],
                             "batch": {"calls": b.calls, "faces": b.faces, "fill": round(b.fill, 3),
                                       "max_fill": b.max_fill, "queue_depth": b.queue_depth}},
                            headers=_NO_STORE)


def _add_cameras(app: FastAPI, ms: MultiStream) -> None:
    """Adding and removing cameras while running."""

    @app.post("/api/streams", status_code=201)
    async def add(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            raise HTTPException(400, "the body must be a JSON object {id, source, ...}") from None
        if not isinstance(body, dict):
            raise HTTPException(400, "the body must be a JSON object {id, source, ...}")
        for key in SERVER_FILES:  # a client must not choose where the server writes files
            if body.get(key) is not None:
                raise HTTPException(400, f"{key}: cannot be set over HTTP (the server writes it); "
                                         "set it in CAMERAS.yaml")
        try:  # opening a stream blocks up to its open timeout: not on the event loop
            cam = await run_in_threadpool(ms.add, body)
        except CameraError as e:
            raise HTTPException(409, str(e)) from None
        except UarError as e:
            raise HTTPException(400, str(e).splitlines()[0]) from None
        return JSONResponse(cam.status(), 201)

    @app.delete("/api/streams/{camera_id}")
    async def remove(camera_id: str) -> JSONResponse:
        try:
            cam = await run_in_threadpool(ms.remove, camera_id)
        except CameraError as e:
            raise HTTPException(404, str(e)) from None
        summary = cam.stream.summary.to_dict()
        return JSONResponse({"removed": camera_id, "summary": summary})


def _add_live(app: FastAPI, ms: MultiStream, stop: threading.Event) -> None:
    """What changes every frame: tracks, snapshot, MJPEG, the event feed."""

    def camera(camera_id: str) -> Camera:
        return _camera(ms, camera_id)

    @app.get("/api/streams/{camera_id}/tracks")
    async def tracks(camera_id: str) -> JSONResponse:
        view = camera(camera_id).view
        return JSONResponse({"camera": camera_id, "now": view.now_t, "tracks": view.timelines()})

    @app.get("/api/streams/{camera_id}/snapshot.jpg")
    async def snapshot(camera_id: str) -> Response:
        j = await run_in_threadpool(camera(camera_id).view.jpeg)
        if j is None:
            raise HTTPException(503, f"camera {camera_id!r} has no frame yet")
        return Response(j[1], media_type="image/jpeg", headers=_NO_STORE)

    @app.get("/api/streams/{camera_id}/mjpeg")
    async def mjpeg(camera_id: str) -> StreamingResponse:
        cam = camera(camera_id)
        return StreamingResponse(_mjpeg(ms, cam, stop), headers=_NO_STORE,
                                 media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}")

    @app.get("/api/events")
    async def events(stream: str | None = None) -> StreamingResponse:
        if stream is not None:
            camera(stream)
        return StreamingResponse(_sse(ms, stream, stop), media_type="text/event-stream",
                                 headers={**_NO_STORE, "X-Accel-Buffering": "no"})


def _gone(ms: MultiStream, cam: Camera, stop: threading.Event) -> bool:
    return stop.is_set() or ms.closed or cam.state == "stopped"


async def _mjpeg(ms: MultiStream, cam: Camera, stop: threading.Event):
    """One JPEG part per new frame, at most ``view_fps`` a second; latest frame wins."""
    interval = 1.0 / ms.config.serve.view_fps
    loop = asyncio.get_running_loop()
    sent = -1
    while not _gone(ms, cam, stop):
        t0 = loop.time()
        if cam.view.seq == sent:
            await asyncio.sleep(0.02)
            continue
        j = await run_in_threadpool(cam.view.jpeg)
        if j is None:
            await asyncio.sleep(0.05)
            continue
        sent, data = j
        yield (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
               ).encode() + data + b"\r\n"
        await asyncio.sleep(max(0.0, interval - (loop.time() - t0)))


async def _sse(ms: MultiStream, camera_id: str | None, stop: threading.Event):
    """Every event (of one camera or all) as ``data: {json}``; a comment line every 10 s."""
    accept = None if camera_id is None else (lambda ev: ev.camera == camera_id)
    sub = ms.events.subscribe(2000, accept)
    loop = asyncio.get_running_loop()
    last = loop.time()
    try:
        yield ": uar-stream events\n\n"
        while not (stop.is_set() or ms.closed):
            items = sub.drain()
            for ev in items:
                yield f"data: {json.dumps(ev.to_dict(), separators=(',', ':'), default=float)}\n\n"
            if items:
                last = loop.time()
            elif loop.time() - last > 10:
                last = loop.time()
                yield ": keep-alive\n\n"
            await asyncio.sleep(0.1)
    finally:
        sub.close()

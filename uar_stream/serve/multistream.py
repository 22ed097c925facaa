"""``MultiStream``: many cameras, one engine, batched across streams -- the Python API of
``uar-stream serve`` (the HTTP layer sits on top of it, in ``serve/http.py``).

>>> with MultiStream(load_serve_config("CAMERAS.yaml")) as ms:
...     ms.add({"id": "door", "source": "rtsp://127.0.0.1:8554/door"})
...     for camera_id, result in ms.results():
...         print(camera_id, result.index, [f.route.value for f in result.faces])
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterator

from uar_stream.backends import Engine, create_engine
from uar_stream.errors import UarError
from uar_stream.flow import StreamResult
from uar_stream.model.locate import resolve_model_path
from uar_stream.serve.batcher import BatchStats, CrossStreamBatcher
from uar_stream.serve.camera import Camera
from uar_stream.serve.cameras import CameraConfig, ServeConfig, parse_camera
from uar_stream.serve.hub import Hub, Subscription


class CameraError(UarError):
    """A camera cannot be added or found (duplicate or unknown id)."""


@dataclass
class CameraResult:
    """One analysed frame of one camera."""

    camera: str
    result: StreamResult


class MultiStream:
    """Cameras (``add``, ``remove``, ``cameras``), one engine behind a
    :class:`~uar_stream.serve.batcher.CrossStreamBatcher`, and two feeds: ``results()``
    (every analysed frame with its camera id) and ``events`` (a hub of
    :class:`~uar_stream.serve.view.CameraEvent`). Slow readers of either lose their oldest
    items, never slow analysis. ``close()`` stops every camera and finalises its outputs.

    ``engine``: an engine instead of the one ``config``'s ``engine:`` section builds.
    ``start``: add the config's enabled cameras now (a bad one raises, naming it).
    """

    def __init__(self, config: ServeConfig, engine: Engine | None = None, start: bool = True):
        self.config = config
        base = config.analyzer_config()
        e = base.engine
        self.engine = engine or create_engine(resolve_model_path(base.model.path), e.backend, e.device,
                                              e.precision, e.max_batch, e.threads)
        s = config.serve
        self.batcher = CrossStreamBatcher(self.engine, s.max_batch, s.batch_timeout_ms)
        self.events = Hub()
        self._results = Hub()
        self._cameras: dict[str, Camera] = {}
        self._lock = threading.Lock()
        self._closed = False
        if start:
            try:
                for cam in config.cameras:
                    if cam.enabled:
                        self.add(cam)
            except BaseException:
                self.close()
                raise

    # -- cameras ------------------------------------------------------------------------
    def add(self, camera: CameraConfig | dict) -> Camera:
        """Open and start a camera (a dict is validated like a ``cameras:`` entry). Raises
        ConfigError / SourceError / SinkError (one line, naming the camera) or CameraError."""
        if isinstance(camera, dict):
            camera = parse_camera(camera, self.config)
        with self._lock:
            if self._closed:
                raise CameraError("the service is shutting down")
            if camera.id in self._cameras:
                raise CameraError(f"camera {camera.id!r} exists already; ids must be unique")
            self._cameras[camera.id] = None  # type: ignore[assignment]  # reserve the id
        try:
            cam = Camera(camera, self.config.analyzer_config(camera), self.batcher,
                         (self.engine.name, self.engine.members, self.engine.num_classes),
                         self.events, self._publish, self.config.serve.jpeg_quality)
        except UarError as e:
            with self._lock:
                del self._cameras[camera.id]
            raise type(e)(f"camera {camera.id}: {e}") from None
        except BaseException:
            with self._lock:
                del self._cameras[camera.id]
            raise
        with self._lock:
            self._cameras[camera.id] = cam
        cam.start()
        return cam

    def remove(self, camera_id: str, timeout: float = 10.0) -> Camera:
        """Stop a camera, finalise its outputs, forget it; CameraError if unknown."""
        with self._lock:
            cam = self._cameras.get(camera_id)
            if cam is None:
                raise CameraError(f"no camera {camera_id!r}; cameras: {', '.join(self._ids()) or 'none'}")
            del self._cameras[camera_id]
        cam.stop(timeout)
        return cam

    def get(self, camera_id: str) -> Camera:
        """The camera; CameraError if unknown."""
        with self._lock:
            cam = self._cameras.get(camera_id)
        if cam is None:
            raise CameraError(f"no camera {camera_id!r}")
        return cam

    def cameras(self) -> list[Camera]:
        """Every camera, in the order they were added."""
        with self._lock:
            return [c for c in self._cameras.values() if c is not None]

    def _ids(self) -> list[str]:
        return [k for k, v in self._cameras.items() if v is not None]

    # -- feeds --------------------------------------------------------------------------
    def results(self, camera_id: str | None = None, maxsize: int = 256) -> Iterator[CameraResult]:
        """Every analysed frame (of one camera, or of all), in each camera's frame order,
        until the service closes or the caller stops iterating."""
        sub = self.subscribe_results(camera_id, maxsize)
        try:
            yield from sub
        finally:
            sub.close()

    def subscribe_results(self, camera_id: str | None = None, maxsize: int = 256) -> Subscription:
        """A queue of :class:`CameraResult` (``get(timeout)``, ``drain()``, ``close()``)."""
        accept = None if camera_id is None else (lambda r: r.camera == camera_id)
        return self._results.subscribe(maxsize, accept)

    def _publish(self, camera_id: str, result: StreamResult) -> None:
        self._results.publish(CameraResult(camera_id, result))

    def stats(self) -> BatchStats:
        """The batcher's counters (engine calls, faces, fill, queue depth)."""
        return self.batcher.stats()

    # -- lifetime -----------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """True once ``close()`` began."""
        return self._closed

    def close(self, timeout: float = 10.0, interrupted: bool = False) -> None:
        """Stop every camera (in parallel: each finalises its recording and event log,
        run_ended last), then the engine batcher; idempotent. ``interrupted``: the
        summaries record that the service was asked to stop (SIGINT/SIGTERM)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            cams = [c for c in self._cameras.values() if c is not None]
        stoppers = [threading.Thread(target=c.stop, args=(timeout, interrupted), name=f"uar-stop-{c.id}")
                    for c in cams]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join(timeout + 5)
        self.batcher.close()
        self._results.close()
        self.events.close()

    def __enter__(self) -> MultiStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

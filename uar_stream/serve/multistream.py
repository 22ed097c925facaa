"""``MultiStream``: many cameras, one engine, batched across streams -- the Python API of
``uar-stream serve`` (the HTTP layer sits on top of it, in ``serve/http.py``). What any
multi-camera service shares (cameras by id, the feeds, closing) is in ``serve/registry.py``.

>>> with MultiStream(load_serve_config("CAMERAS.yaml")) as ms:
...     ms.add({"id": "door", "source": "rtsp://127.0.0.1:8554/door"})
...     for camera_id, result in ms.results():
...         print(camera_id, result.index, [f.route.value for f in result.faces])
"""
from __future__ import annotations

from uar_stream.backends import Engine, create_engine
from uar_stream.model.locate import resolve_model_path
from uar_stream.serve.batcher import BatchStats, CrossStreamBatcher
from uar_stream.serve.camera import Camera
from uar_stream.serve.cameras import CameraConfig, ServeConfig, parse_camera
from uar_stream.serve.registry import CameraError, CameraRegistry, CameraResult

__all__ = ["CameraError", "CameraResult", "MultiStream"]


class MultiStream(CameraRegistry[Camera]):
    """Cameras (``add``, ``remove``, ``cameras``), one engine behind a
    :class:`~uar_stream.serve.batcher.CrossStreamBatcher`, and two feeds: ``results()``
    (every analysed frame with its camera id) and ``events`` (a hub of
    :class:`~uar_stream.serve.view.CameraEvent`). Slow readers of either lose their oldest
    items, never slow analysis. ``close()`` stops every camera and finalises its outputs.

    ``engine``: an engine instead of the one ``config``'s ``engine:`` section builds.
    ``start``: add the config's enabled cameras now (a bad one raises, naming it).
    """

    def __init__(self, config: ServeConfig, engine: Engine | None = None, start: bool = True):
        super().__init__()
        self.config = config
        base = config.analyzer_config()
        e = base.engine
        self.engine = engine or create_engine(resolve_model_path(base.model.path), e.backend, e.device,
                                              e.precision, e.max_batch, e.threads, e.flip_tta)
        s = config.serve
        self.batcher = CrossStreamBatcher(self.engine, s.max_batch, s.batch_timeout_ms)
        if start:
            try:
                for cam in config.cameras:
                    if cam.enabled:
                        self.add(cam)
            except BaseException:
                self.close()
                raise

    def add(self, camera: CameraConfig | dict) -> Camera:
        """Open and start a camera (a dict is validated like a ``cameras:`` entry). Raises
        ConfigError / SourceError / SinkError (one line, naming the camera) or CameraError."""
        if isinstance(camera, dict):
            camera = parse_camera(camera, self.config)
        self._reserve(camera.id)
        with self._opening(camera.id):
            cam = Camera(camera, self.config.analyzer_config(camera), self.batcher,
                         (self.engine.name, self.engine.members, self.engine.num_classes),
                         self.events, self._publish, self.config.serve.jpeg_quality)
        self._register(cam)
        cam.start()
        return cam

    def stats(self) -> BatchStats:
        """The batcher's counters (engine calls, faces, fill, queue depth)."""
        return self.batcher.stats()

    def close(self, timeout: float = 10.0, interrupted: bool = False) -> None:
        """Stop every camera (in parallel: each finalises its recording and event log,
        run_ended last), then the engine batcher; idempotent. ``interrupted``: the
        summaries record that the service was asked to stop (SIGINT/SIGTERM)."""
        cams = self._begin_close()
        if cams is None:
            return
        self._stop_all(cams, timeout, interrupted, grace_s=5.0)
        self.batcher.close()
        self._close_feeds()

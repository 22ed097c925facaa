"""``ClusterStream``: :class:`~uar_stream.serve.multistream.MultiStream`'s interface (what
``serve``'s HTTP layer uses) over a Ray cluster: one actor per camera, the ensemble as a
Ray Serve deployment.

>>> config, options = load_cluster_config("CAMERAS.yaml")
>>> with ClusterStream(config, options, address="auto") as cs:
...     for item in cs.results():
...         print(item.camera, item.result.index)
"""
from __future__ import annotations

import threading
from typing import Iterator

from uar_stream.cluster.connect import Connection
from uar_stream.cluster.options import ClusterOptions
from uar_stream.cluster.remote import RemoteCamera
from uar_stream.errors import UarError
from uar_stream.flow import StreamResult
from uar_stream.serve.batcher import BatchStats
from uar_stream.serve.cameras import CameraConfig, ServeConfig, parse_camera
from uar_stream.serve.hub import Hub, Subscription
from uar_stream.serve.multistream import CameraError, CameraResult


class ClusterStream:
    """Cameras as Ray actors (placed by ``options``: CPUs, custom resources, restarts), the
    ensemble as a Serve application; ``results()``, ``events``, ``stats()``, ``add``,
    ``remove``, ``get``, ``cameras``, ``close`` as in MultiStream. ``address``: ``auto``
    (a running cluster), ``local`` (start one in this process) or a Ray address."""

    def __init__(self, config: ServeConfig, options: ClusterOptions, address: str = "auto",
                 start: bool = True):
        self.config, self.options = config, options
        self.events = Hub()
        self._results = Hub()
        self._cameras: dict[str, RemoteCamera | None] = {}
        self._lock = threading.Lock()
        self._closed = False
        enabled = [c.id for c in config.cameras if c.enabled]
        self.ray = Connection(address, Connection.cpus_needed(options, enabled))
        try:
            self.ray.deploy(config.analyzer_config(), options)
            if start:
                self._add_all([c for c in config.cameras if c.enabled])
        except BaseException:
            self.close()
            raise

    # -- cameras ------------------------------------------------------------------------
    def add(self, camera: CameraConfig | dict) -> RemoteCamera:
        """Place and start a camera actor; raises the actor's one-line error or CameraError."""
        if isinstance(camera, dict):
            camera = parse_camera(camera, self.config)
        self._reserve(camera)
        return self._start(camera)

    def _reserve(self, camera: CameraConfig) -> None:
        with self._lock:
            if self._closed:
                raise CameraError("the service is shutting down")
            if camera.id in self._cameras:
                raise CameraError(f"camera {camera.id!r} exists already; ids must be unique")
            self._cameras[camera.id] = None  # reserve the id (and its place in the order)

    def _add_all(self, cameras: list[CameraConfig]) -> None:
        """Start the config's cameras at once (an actor's start-up takes seconds: imports,
        detector); the first error is raised after every start has finished."""
        for cam in cameras:
            self._reserve(cam)
        errors: list[BaseException] = []

        def one(cam: CameraConfig) -> None:
            try:
                self._start(cam)
            except BaseException as e:  # noqa: BLE001 - raised below, after the others
                errors.append(e)
        threads = [threading.Thread(target=one, args=(c,), name=f"uar-add-{c.id}") for c in cameras]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def _start(self, camera: CameraConfig) -> RemoteCamera:
        try:
            analyzer = self.config.analyzer_config(camera)
            actor = self.ray.camera_actor(camera, analyzer.to_dict(), self.options)
            cam = RemoteCamera(camera, analyzer, actor, self.events, self._publish,
                               self.config.serve.jpeg_quality, placement=self.options.placement(camera.id))
            try:
                cam.start()
            except BaseException:
                self.ray.kill(actor)
                raise
        except BaseException as e:
            with self._lock:
                del self._cameras[camera.id]
            if isinstance(e, UarError) and not str(e).startswith(f"camera {camera.id}"):
                raise type(e)(f"camera {camera.id}: {e}") from None
            raise
        with self._lock:
            self._cameras[camera.id] = cam
        return cam

    def remove(self, camera_id: str, timeout: float = 10.0) -> RemoteCamera:
        """Stop a camera (its actor finalises its files), end its actor; CameraError if unknown."""
        with self._lock:
            cam = self._cameras.get(camera_id)
            if cam is None:
                raise CameraError(f"no camera {camera_id!r}; cameras: {', '.join(self._ids()) or 'none'}")
            del self._cameras[camera_id]
        cam.stop(timeout)
        self.ray.kill(cam.actor)
        return cam

    def get(self, camera_id: str) -> RemoteCamera:
        """The camera; CameraError if unknown."""
        with self._lock:
            cam = self._cameras.get(camera_id)
        if cam is None:
            raise CameraError(f"no camera {camera_id!r}")
        return cam

    def cameras(self) -> list[RemoteCamera]:
        """Every camera, in the order they were added."""
        with self._lock:
            return [c for c in self._cameras.values() if c is not None]

    def _ids(self) -> list[str]:
        return [k for k, v in self._cameras.items() if v is not None]

    # -- feeds --------------------------------------------------------------------------
    def results(self, camera_id: str | None = None, maxsize: int = 256) -> Iterator[CameraResult]:
        """Every analysed frame (of one camera, or all) as it reaches the driver."""
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
        """Engine batches as the cameras' requests saw them (calls: exact, from each
        request's share of its batch; queue depth: not known here, 0)."""
        parts = [c.batch for c in self.cameras() if c.batch]
        faces = sum(p["faces"] for p in parts)
        calls = sum(p["calls"] for p in parts)
        return BatchStats(calls=round(calls), faces=faces, requests=sum(p["requests"] for p in parts),
                          max_fill=max((p["max_fill"] for p in parts), default=0))

    # -- lifetime -----------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """True once ``close()`` began."""
        return self._closed

    def close(self, timeout: float = 10.0, interrupted: bool = False) -> None:
        """Stop every camera in parallel (each finalises its files), remove the Serve
        application and the actors, disconnect (a ``local`` cluster stops); idempotent.
        ``interrupted``: the service was asked to stop (recorded in each summary)."""
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
            t.join(timeout + 15)
        for c in cams:
            self.ray.kill(c.actor)
        self._results.close()
        self.events.close()
        self.ray.close()

    def __enter__(self) -> ClusterStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""``ClusterStream``: :class:`~uar_stream.serve.multistream.MultiStream`'s interface (what
``serve``'s HTTP layer uses) over a Ray cluster: one actor per camera, the ensemble as a
Ray Serve deployment. The cameras by id, the feeds and closing are
:class:`~uar_stream.serve.registry.CameraRegistry`'s, as in MultiStream.

>>> config, options = load_cluster_config("CAMERAS.yaml")
>>> with ClusterStream(config, options, address="auto") as cs:
...     for item in cs.results():
...         print(item.camera, item.result.index)
"""
from __future__ import annotations

import threading

from uar_stream.cluster.connect import Connection
from uar_stream.cluster.options import ClusterOptions
from uar_stream.cluster.remote import RemoteCamera
from uar_stream.serve.batcher import BatchStats
from uar_stream.serve.cameras import CameraConfig, ServeConfig, parse_camera
from uar_stream.serve.registry import CameraRegistry


class ClusterStream(CameraRegistry[RemoteCamera]):
    """Cameras as Ray actors (placed by ``options``: CPUs, custom resources, restarts), the
    ensemble as a Serve application; ``results()``, ``events``, ``stats()``, ``add``,
    ``remove``, ``get``, ``cameras``, ``close`` as in MultiStream. ``address``: ``auto``
    (a running cluster), ``local`` (start one in this process) or a Ray address."""

    def __init__(self, config: ServeConfig, options: ClusterOptions, address: str = "auto",
                 start: bool = True):
        super().__init__()
        self.config, self.options = config, options
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
        self._reserve(camera.id)
        return self._start(camera)

    def _add_all(self, cameras: list[CameraConfig]) -> None:
        """Start the config's cameras at once (an actor's start-up takes seconds: imports,
        detector); the first error is raised after every start has finished."""
        for cam in cameras:
            self._reserve(cam.id)
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
        with self._opening(camera.id):
            analyzer = self.config.analyzer_config(camera)
            actor = self.ray.camera_actor(camera, analyzer.to_dict(), self.options)
            cam = RemoteCamera(camera, analyzer, actor, self.events, self._publish,
                               self.config.serve.jpeg_quality, placement=self.options.placement(camera.id))
            try:
                cam.start()
            except BaseException:
                self.ray.kill(actor)
                raise
        self._register(cam)
        return cam

    def remove(self, camera_id: str, timeout: float = 10.0) -> RemoteCamera:
        """Stop a camera (its actor finalises its files), end its actor; CameraError if unknown."""
        cam = super().remove(camera_id, timeout)
        self.ray.kill(cam.actor)
        return cam

    def stats(self) -> BatchStats:
        """Engine batches as the cameras' requests saw them (calls: exact, from each
        request's share of its batch; queue depth: not known here, 0)."""
        parts = [c.batch for c in self.cameras() if c.batch]
        faces = sum(p["faces"] for p in parts)
        calls = sum(p["calls"] for p in parts)
        return BatchStats(calls=round(calls), faces=faces, requests=sum(p["requests"] for p in parts),
                          max_fill=max((p["max_fill"] for p in parts), default=0))

    # -- lifetime -----------------------------------------------------------------------
    def close(self, timeout: float = 10.0, interrupted: bool = False) -> None:
        """Stop every camera in parallel (each finalises its files), remove the Serve
        application and the actors, disconnect (a ``local`` cluster stops); idempotent.
        ``interrupted``: the service was asked to stop (recorded in each summary)."""
        cams = self._begin_close()
        if cams is None:
            return
        self._stop_all(cams, timeout, interrupted, grace_s=15.0)
        for c in cams:
            self.ray.kill(c.actor)
        self._close_feeds()
        self.ray.close()

"""``CameraRegistry``: what every multi-camera service shares, wherever its cameras run --
the cameras by id (in the order they were added), the two feeds (``results()`` and
``events``) and the lifetime (``close()`` stops every camera in parallel, each finalising
its summary). :class:`~uar_stream.serve.multistream.MultiStream` (cameras in this process)
and the cluster's ``ClusterStream`` (cameras as Ray actors) build on it; the HTTP layer
reads only what is here plus ``add`` and ``stats()``.

A service adds a camera in three steps: ``_reserve`` its id (unique, and not while
closing), open it inside ``with self._opening(id):`` (on failure the id is freed and a
one-line error names the camera), then ``_register`` the opened camera.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Generic, Iterator, Protocol, TypeVar

from uar_stream.errors import UarError
from uar_stream.flow import StreamResult
from uar_stream.serve.hub import Hub, Subscription


class CameraError(UarError):
    """A camera cannot be added or found (duplicate or unknown id)."""


@dataclass
class CameraResult:
    """One analysed frame of one camera."""

    camera: str
    result: StreamResult


class StoppableCamera(Protocol):
    """What the registry needs of a camera: its id and a ``stop`` that finalises it."""

    id: str

    def stop(self, timeout: float = 10.0, interrupted: bool = False) -> None:
        """End the camera and finalise its outputs (``interrupted``: a signal asked)."""


CameraT = TypeVar("CameraT", bound=StoppableCamera)
RegistryT = TypeVar("RegistryT", bound="CameraRegistry")


class CameraRegistry(Generic[CameraT]):
    """Cameras by id, the ``results()`` and ``events`` feeds, and the closed flag (see the
    module docstring). Thread-safe. Slow readers of either feed lose their oldest items,
    never slow analysis."""

    def __init__(self) -> None:
        self.events = Hub()
        self._results = Hub()
        self._cameras: dict[str, CameraT | None] = {}  # None: an id reserved, its camera opening
        self._lock = threading.Lock()
        self._closed = False

    # -- adding (for the services) --------------------------------------------------------
    def _reserve(self, camera_id: str) -> None:
        """Hold ``camera_id`` (and its place in the order); CameraError if taken or closing."""
        with self._lock:
            if self._closed:
                raise CameraError("the service is shutting down")
            if camera_id in self._cameras:
                raise CameraError(f"camera {camera_id!r} exists already; ids must be unique")
            self._cameras[camera_id] = None

    @contextlib.contextmanager
    def _opening(self, camera_id: str) -> Iterator[None]:
        """Around opening a reserved camera: if it fails, free the id; a one-line UarError is
        raised again naming the camera (unless it names it already)."""
        try:
            yield
        except BaseException as e:
            with self._lock:
                del self._cameras[camera_id]
            if isinstance(e, UarError) and not str(e).startswith(f"camera {camera_id}"):
                raise type(e)(f"camera {camera_id}: {e}") from None
            raise

    def _register(self, camera: CameraT) -> None:
        """The reserved id's camera is open."""
        with self._lock:
            self._cameras[camera.id] = camera

    # -- cameras --------------------------------------------------------------------------
    def remove(self, camera_id: str, timeout: float = 10.0) -> CameraT:
        """Stop a camera, finalise its outputs, forget it; CameraError if unknown."""
        with self._lock:
            cam = self._cameras.get(camera_id)
            if cam is None:
                raise CameraError(f"no camera {camera_id!r}; cameras: {', '.join(self._ids()) or 'none'}")
            del self._cameras[camera_id]
        cam.stop(timeout)
        return cam

    def get(self, camera_id: str) -> CameraT:
        """The camera; CameraError if unknown."""
        with self._lock:
            cam = self._cameras.get(camera_id)
        if cam is None:
            raise CameraError(f"no camera {camera_id!r}")
        return cam

    def cameras(self) -> list[CameraT]:
        """Every camera, in the order they were added."""
        with self._lock:
            return [c for c in self._cameras.values() if c is not None]

    def _ids(self) -> list[str]:
        """The open cameras' ids (the caller holds the lock)."""
        return [k for k, v in self._cameras.items() if v is not None]

    # -- feeds ----------------------------------------------------------------------------
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
        """Hand one camera's result to the ``results()`` readers (a camera's callback)."""
        self._results.publish(CameraResult(camera_id, result))

    # -- lifetime -------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """True once ``close()`` began."""
        return self._closed

    def _begin_close(self) -> list[CameraT] | None:
        """Mark the service closed; its cameras, or None if it was closed already."""
        with self._lock:
            if self._closed:
                return None
            self._closed = True
            return [c for c in self._cameras.values() if c is not None]

    @staticmethod
    def _stop_all(cams: list[CameraT], timeout: float, interrupted: bool, grace_s: float) -> None:
        """Stop the cameras in parallel (each finalises its outputs and summary); wait for
        each at most ``timeout + grace_s`` seconds."""
        stoppers = [threading.Thread(target=c.stop, args=(timeout, interrupted), name=f"uar-stop-{c.id}")
                    for c in cams]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join(timeout + grace_s)

    def _close_feeds(self) -> None:
        """End every reader of ``results()`` and ``events``."""
        self._results.close()
        self.events.close()

    def close(self, timeout: float = 10.0, interrupted: bool = False) -> None:
        """Stop every camera in parallel, then end the feeds; idempotent. ``interrupted``:
        the summaries record that the service was asked to stop (SIGINT/SIGTERM)."""
        cams = self._begin_close()
        if cams is None:
            return
        self._stop_all(cams, timeout, interrupted, 5.0)
        self._close_feeds()

    def __enter__(self: RegistryT) -> RegistryT:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
